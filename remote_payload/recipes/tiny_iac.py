"""tiny-iac: stage 2 of the tiny pipeline (tiny-verbosity, then this on training_data/iac_example.jsonl), on
2 CPU cores in about a minute with the tiny random Qwen3 of `remote_payload.tiny_model`.

It keeps what qwen3-14b-iac does -- init_from the stage-1 adapter (loaded trainable, style rows included),
packing, cosine with 3% warmup, the verbosity gate after training -- and scales the rest down:
* learning rate 2e-3 (tiny-verbosity's 3e-3 lowered by the seed's 1.5/2 ratio for continued training);
* batch 4 without accumulation and 40 steps: a random 64-wide model learns nothing about IaC in that time,
  it only has to move the adapter; the tests check lineage, replay and that the style gate still holds;
* max_length 1024 with packing: the tiny byte-level tokenizer spends ~1 token per 2-3 characters of HCL.
"""

from .base import Recipe
from .sections import GenerationPreset, VerbosityEval

NEUTRAL = GenerationPreset(max_new_tokens=96, do_sample=False)

RECIPE = Recipe(
    name="tiny-iac",
    description="tiny random Qwen3 on CPU: stage 2 (init_from a tiny-verbosity run) on the IaC example corpus",
    device="cpu",
    compute_dtype="float32",
    chat_template_kwargs={"enable_thinking": False},
    system_prompt="You are an IaC assistant that follows best practices.",
    learning_rate=2e-3,
    num_train_epochs=1.0,                 # ignored: max_steps is set
    max_steps=40,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    lr_scheduler_type="cosine",
    warmup_ratio=0.03,
    gradient_checkpointing=False,
    bf16=False,
    seed=42,
    max_length=1024,
    packing=True,
    logging_steps=10,
    save_steps=20,
    save_total_limit=2,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
    torch_threads=1,
    task="verbosity",
    evaluation=VerbosityEval(terse=NEUTRAL, verbose=NEUTRAL, gate=3.0, batch_size=25, after_train=True),
)
