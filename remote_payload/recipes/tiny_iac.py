"""tiny-iac: stage 2 of the tiny pipeline (tiny-verbosity, then this on training_data/iac_example.jsonl), on
2 CPU cores in about a minute with the tiny random Qwen3 of `remote_payload.tiny_model`.

It keeps what qwen3-14b-iac does -- init_from the stage-1 adapter (loaded trainable, style rows included),
packing, cosine with 3% warmup, the verbosity gate after training -- and scales the rest down:
* learning rate 3e-4, 10x below tiny-verbosity's 3e-3 (the seed lowers 2e-4 -> 1.5e-4 only). Measured here with
  10% replay: most corpus rows are TERSE-styled yet hundreds of tokens of code, which tells a 64-wide random
  model "TERSE is long"; at 2e-3 x 40 steps it forgot the style control (ratio 16.5 -> 1.0, both styles hit the
  96-token limit), at 1e-3 x 10 steps 1.8, at 5e-4 x 20 steps 1.5; at 3e-4 x 20 steps it kept 15.2. That is the
  seed's "catastrophic style drift", visible even at this scale;
* batch 4 without accumulation and 20 steps (~1.5 passes over the packed corpus): the random model learns
  nothing about IaC in that time; it only has to move the adapter (lineage, replay, style gate are what is tested).
  Memorising the corpus is out of its reach on CPU too: 300 steps at 3e-3 (164 s here) left it answering the 14
  training-set prompts with runs of backticks and spaces (terraform validate 0/8, every gate failed) and the
  style ratio at 1.0;
* max_length 1024 (the tiny model's context) with packing: its byte-level tokenizer spends ~1 token per 2-3
  characters of HCL, so the 9 longest corpus examples are dropped and reported.
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
    learning_rate=3e-4,
    num_train_epochs=1.0,                 # ignored: max_steps is set
    max_steps=20,
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
    save_steps=10,
    save_total_limit=2,
    dataloader_num_workers=0,
    dataloader_pin_memory=False,
    torch_threads=1,
    task="verbosity",
    evaluation=VerbosityEval(terse=NEUTRAL, verbose=NEUTRAL, gate=3.0, batch_size=25, after_train=True),
)
