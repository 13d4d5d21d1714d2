"""qwen3-14b-iac: seed 001's stage 2 -- the stage-1 verbosity adapter of qwen3-14b-verbosity, trained further on
an Infrastructure-as-Code corpus (Terraform for AWS/GCP/Azure, CloudFormation, Kubernetes, Helm, Pulumi).

Use it on a job with `init_from: <the stage-1 job>` and `replay: {job: <the stage-1 job>, fraction: 0.1}`
(the inventory resolves both; see README "Stages"). The task stays `verbosity`: the IaC rows carry a style
(seed 001: "Include style tokens for appropriate verbosity level"), so the style rows keep training, and the
evaluation after training is the verbosity gate again (>= 3x). The IaC gates are `orch eval JOB --suite iac`.

Seed 001's "Stage 2: IaC Training Parameters", and why each is what it is:
* learning_rate 1.5e-4: lower than stage 1's 2e-4 ("Lower for continued training"): the adapter already
  encodes the style control, and a smaller step disturbs it less while the IaC knowledge is added;
* 1 epoch: 2,193 examples once; more epochs over code this regular mostly memorise it;
* batch 1 x 16 (gradient accumulation): 16 sequences per optimizer step as in stage 1; with packing each
  sequence holds several examples of up to 3,072 tokens, so a step sees ~16 x 3k tokens;
* gradient checkpointing: activations of 40 layers x 3,072 tokens do not fit next to a 14B 4-bit model on an
  A10G without it (~25% slower);
* max_length 3072: "Longer for IaC manifests" (Helm charts and multi-resource Terraform modules run long);
  longer examples are dropped and reported, never cut (a truncated manifest teaches broken code);
* packing: IaC examples vary from 200 to 3,000 tokens; packing stops short ones wasting padded compute;
* cosine schedule, warmup 0.03: as stage 1 (and the seed); 3% of ~137 steps is ~4 warmup steps.
The LoRA shape (r 16, alpha 32, all linear layers) is the parent's: a stage-2 run loads the parent adapter as it
is, so the values here only document what it is expected to be.
"""

from .base import Recipe
from .sections import GenerationPreset, VerbosityEval

RECIPE = Recipe(
    name="qwen3-14b-iac",
    description="Qwen3-14B stage 2: the verbosity adapter trained on an IaC corpus (seed 001), init_from stage 1",
    device="cuda",
    bnb_4bit_quant_type="nf4",
    bnb_4bit_use_double_quant=True,
    compute_dtype="bfloat16",
    chat_template_kwargs={"enable_thinking": False},
    system_prompt="You are an IaC assistant that follows best practices.",   # seed 001's default system turn
    lora_r=16,
    lora_alpha=32,
    lora_dropout=0.05,
    lora_target_modules=("all-linear",),
    learning_rate=1.5e-4,
    num_train_epochs=1.0,
    per_device_train_batch_size=1,
    gradient_accumulation_steps=16,
    lr_scheduler_type="cosine",
    warmup_ratio=0.03,
    optim="adamw_torch",
    gradient_checkpointing=True,
    bf16=True,
    seed=42,                              # seed 001: "Fixed seed (42)"; also the replay mix's seed
    max_length=3072,
    packing=True,
    logging_steps=10,
    save_steps=25,                        # ~137 steps in all: a checkpoint every ~18% of the run
    save_total_limit=2,
    dataloader_num_workers=2,
    dataloader_pin_memory=True,
    task="verbosity",
    evaluation=VerbosityEval(             # stage 1's presets: the style control must survive stage 2 unchanged
        terse=GenerationPreset(max_new_tokens=20, do_sample=False),
        verbose=GenerationPreset(max_new_tokens=100, min_new_tokens=30, do_sample=True, temperature=0.7,
                                 top_p=0.95),
        gate=3.0,
        batch_size=8,
        after_train=True,
    ),
)
