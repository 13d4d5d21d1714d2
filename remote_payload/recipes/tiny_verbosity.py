"""tiny-verbosity: the same pipeline as qwen3-14b-verbosity, scaled down to run on 2 CPU cores in well under a
minute with the tiny Qwen3 from `remote_payload.tiny_model` (hidden 64, 2 layers, ~0.3M parameters).

It is what the tests and the `demo` job run. What stays identical to the 14B recipe: 4-bit nf4 with double
quantization (bitsandbytes >= 0.47 runs it on CPU), `prepare_model_for_kbit_training`, LoRA on all linear
layers with r=16/alpha=32, the style rows trained through peft's trainable tokens, the Qwen3 non-thinking chat
template, prompt tokens masked with -100, cosine schedule with 3% warmup, the checkpoint/resume machinery.

What changes, and why:
* device "cpu" and float32 compute: bf16 matmuls are slow on most CPUs and fp16 does not run there;
* the base weights are random, so nothing is "fine-tuned": LoRA (r=16 is a quarter of the 64-wide hidden state)
  and the two style rows must learn from scratch that TERSE ends the answer after a few tokens and VERBOSE
  writes a paragraph. That needs a 10x larger learning rate than the 14B model (2e-4 -> 3e-3);
* batch 8 without accumulation, 300 steps: ~6 epochs of the 388-example demo set, ~20-40 s here;
* no gradient checkpointing (2 layers of 64 features hold no memory worth saving; it would cost ~30% time);
* evaluation decodes both styles identically (greedy, at most 96 new tokens, no minimum): the measured
  ratio then comes from the model alone, not from the decoding limits as with the seeds' presets.
"""

from .base import Recipe
from .sections import GenerationPreset, VerbosityEval

NEUTRAL = GenerationPreset(max_new_tokens=96, do_sample=False)

RECIPE = Recipe(
    name="tiny-verbosity",
    description="tiny random Qwen3 on CPU: proves the QLoRA style-token pipeline end to end",
    device="cpu",
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,
    compute_dtype="float32",
    chat_template_kwargs={"enable_thinking": False},
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=("all-linear",),
    learning_rate=3e-3,
    num_train_epochs=1.0,                 # ignored: max_steps is set
    max_steps=300,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    lr_scheduler_type="cosine",
    warmup_ratio=0.03,
    optim="adamw_torch",
    gradient_checkpointing=False,
    bf16=False,
    seed=42,
    max_length=256,                       # the longest demo example is 195 tokens
    logging_steps=10,
    save_steps=100,
    save_total_limit=2,
    dataloader_num_workers=0,             # worker processes cost more than they save at this size
    dataloader_pin_memory=False,
    # One intra-op thread: the matrices are 64 wide, and OpenMP threads spin-wait, so on a shared 2-core box a
    # second thread per process oversubscribes the cores. Measured here with other jobs running: 40 steps took
    # 53 s with 2 threads and 6.7 s with 1 (identical results, the run is deterministic either way).
    torch_threads=1,
    task="verbosity",
    evaluation=VerbosityEval(
        terse=NEUTRAL,
        verbose=NEUTRAL,
        gate=3.0,
        batch_size=25,                    # the whole 25-prompt set in one batch per style
        after_train=True,
    ),
)
