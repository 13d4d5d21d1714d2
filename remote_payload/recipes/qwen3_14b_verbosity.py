"""qwen3-14b-verbosity: the user's validated Qwen3-14B QLoRA configuration (seed document 000, "Qwen golden
config"), with its known failures fixed.

What the golden run measured on one A10G (24 GB): 12.7 GB after loading in 4-bit, 9.7 GB allocated / 11.3 GB
reserved while training, 400 optimizer steps in 60 min 41 s (~9 s/step), loss 2.18 -> 0.0024, and a 16x
TERSE/VERBOSE token ratio on its validation prompts.

Departures from the seed, and why:
* style rows are trained with peft's `trainable_token_indices` instead of the hand-written StyleDeltaEmbedding
  wrapper + `modules_to_save`; the adapter reloads without re-creating any wrapper class;
* the style tokens go into two of Qwen3's ~267 spare embedding rows (151,936 rows, ~151,669 used) instead of
  `resize_token_embeddings`, so loading the adapter can never hit the seed's `lm_head.weight` size mismatch;
* prompts are rendered by the tokenizer's own chat template in Qwen3's non-thinking form (an empty
  `<think></think>` block), the same string at training and at generation;
* checkpoints every 50 steps (the seed's save_steps=500 never fired in a 400-step run, so a lost instance lost
  the whole hour);
* peft's `prepare_model_for_kbit_training` upcasts the non-quantized weights (embeddings, lm_head, norms) to
  fp32: about 3 GB more than the seed's 9.7 GB on a 14B model, still inside an A10G's 24 GB.
"""

from .base import Recipe
from .sections import GenerationPreset, VerbosityEval

RECIPE = Recipe(
    name="qwen3-14b-verbosity",
    description="Qwen3-14B QLoRA with <STYLE_TERSE>/<STYLE_VERBOSE> control tokens (seed 000 golden config)",
    # Model loading: BitsAndBytesConfig(load_in_4bit, nf4, double quant, bf16 compute), device_map={"": 0}.
    # Seed 000: "Critical: force single GPU" -- "auto" spread layers over GPUs and broke accelerate.
    device="cuda",
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,       # quantizes the quantization constants too: ~0.4 bit/param saved
    compute_dtype="bfloat16",             # A10G/L4/A100/H100 all have bf16 tensor cores
    chat_template_kwargs={"enable_thinking": False},   # Qwen3 non-thinking form, as served to users
    # LoRA: r=16, alpha=32 (scale alpha/r = 2), dropout 0.05 on every linear layer of every block
    # ("all-linear": q,k,v,o,gate,up,down; lm_head excluded): 40 layers x 1,605,632 = 64,225,280 LoRA weights
    # + 2 style rows x 5,120 = 64,235,520 trainable, exactly the count seed 000 logged (0.43%).
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=("all-linear",),
    # Optimisation, exactly the seed's TrainingArguments: effective batch 1 x 16 = 16 sequences per step.
    # 1,600 pairs = 3,200 examples -> 200 steps/epoch -> 400 steps for 2 epochs (the seed's 400).
    learning_rate=2e-4,                   # the usual QLoRA rate for r=16; the seed converged to 0.0024 loss
    num_train_epochs=2.0,
    per_device_train_batch_size=1,        # 14B in 4-bit leaves ~9 GB of the A10G for activations
    gradient_accumulation_steps=16,
    lr_scheduler_type="cosine",
    warmup_ratio=0.03,                    # 12 of 400 steps
    optim="adamw_torch",                  # seed: "more stable than bnb_8bit"
    gradient_checkpointing=True,          # ~25% slower, but activations of 40 layers x 1024 tokens fit
    bf16=True,
    seed=42,
    max_length=1024,                      # seed's MAX_LEN: "safe for A10G, prevents OOM"; longer pairs are
                                          # dropped and reported (the seed cut them, completion included)
    logging_steps=25,
    save_steps=50,                        # ~7.5 min of A10G time at 9 s/step between checkpoints
    save_total_limit=2,                   # each checkpoint ~0.8 GB (LoRA weights + AdamW moments)
    dataloader_num_workers=2,
    dataloader_pin_memory=True,
    task="verbosity",
    # Evaluation presets: seed 000's "Style-Specific Generation (Essential)". With the same decoding for both
    # styles (e.g. max_new_tokens=128) the seed saw identical lengths; these bound VERBOSE below at 30 and
    # TERSE above at 20 tokens, so a ratio >= 3 still needs TERSE answers of <= ~10 tokens on their own.
    evaluation=VerbosityEval(
        terse=GenerationPreset(max_new_tokens=20, do_sample=False),
        # top_p 0.95 is what seed 000's call inherited from Qwen3's generation_config.json (so is its top_k=20,
        # which still applies: settings a preset does not name come from the model's generation_config).
        verbose=GenerationPreset(max_new_tokens=100, min_new_tokens=30, do_sample=True, temperature=0.7,
                                 top_p=0.95),
        gate=3.0,                         # seed 001: ">= 3x token separation on a 25-prompt eval set"
        batch_size=8,
        after_train=True,
    ),
)
