"""tiny-movielens: the qwen3-0.6b-movielens pipeline scaled down to 2 CPU cores, on the tiny Qwen3 of
`remote_payload.tiny_model` built with head_gain 8 and the synthetic set of `training_data/make_movielens_demo.py`.

What stays identical to the 0.6B recipe: 4-bit nf4 with double quantization, LoRA on all linear layers, the
Qwen3 non-thinking template, label words Yes/No, greedy answers of at most 8 tokens read by
`answers.extract_answer`, evaluation during training with accuracy/F1, early stopping with patience 3 on F1,
the best checkpoint restored at the end, the cosine schedule with 3% warmup.

What changes, and why:
* device "cpu", float32 compute, one torch thread (see tiny-verbosity);
* the base is random, so the rule (a user likes a candidate of the genre they watch) is learned from scratch:
  lr 3e-3 (tiny-verbosity's), batch 8, at most 600 steps -- early stopping ends it once F1 stops improving;
* evaluation every 50 steps on all 96 eval examples (the 0.6B recipe: every 2,000 steps on 1,000), a
  checkpoint every 50 steps (load_best_model_at_end needs save_steps to be a multiple of eval_steps). The model
  answers "Yes" to everything for its first ~100 steps -- F1 0.667 on the balanced set -- and starts to tell
  genres apart around step 150: patience 3 x 50 steps outlasts that plateau, 3 x 25 did not;
* a one-line system prompt: the demo files carry the same one, and every token costs CPU time here.
"""

from .base import Recipe
from .sections import ClassificationEval

SYSTEM_PROMPT = "You recommend movies."

RECIPE = Recipe(
    name="tiny-movielens",
    description="tiny random Qwen3 on CPU: proves the MovieLens yes/no pipeline (accuracy/F1, early stopping)",
    task="classification",
    device="cpu",
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,
    compute_dtype="float32",
    attn_implementation="auto",
    chat_template_kwargs={"enable_thinking": False},
    system_prompt=SYSTEM_PROMPT,
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=("all-linear",),
    learning_rate=3e-3,
    num_train_epochs=1.0,                 # ignored: max_steps is set
    max_steps=600,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    lr_scheduler_type="cosine",
    warmup_ratio=0.03,
    optim="adamw_torch",
    gradient_checkpointing=False,
    bf16=False,
    seed=42,
    max_length=256,                       # the demo examples are ~180 tokens
    logging_steps=10,
    save_steps=50,
    save_total_limit=2,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
    torch_threads=1,
    eval_steps=50,
    eval_max_samples=96,
    early_stopping_patience=3,
    metric_for_best_model="f1",
    load_best_model_at_end=True,
    evaluation=ClassificationEval(
        positive="Yes",
        negative="No",
        max_new_tokens=8,
        batch_size=48,
        samples=96,
        gate_metric="accuracy",
        gate=0.9,                         # issue 11: held-out accuracy >= 0.9
        after_train=True,
    ),
)
