"""QLoRA style-token training.

    python -m remote_payload.train --job BUNDLE/job.json --model-dir DIR --run-dir RUN [--resume] [--extra-epochs N]

Writes into RUN/: run.json (at start and end), metrics.jsonl (one line per logging step), tensorboard/,
checkpoints/checkpoint-N/ (every save_steps, at most save_total_limit), adapter/ (with manifest.json) and, when
the recipe says so, eval.json. `--resume` continues from the latest complete checkpoint with its step, optimizer,
scheduler and RNG state; `--extra-epochs N` continues a run for N more epochs than it last aimed for.
Exit status: 0 trained, 1 the run failed, 2 bad input (job, recipe, dataset, run directory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from .checkpoints import checkpoint_step, find_checkpoints, latest_complete_checkpoint
from .errors import InputError, PayloadError
from .job import Job, read_job
from .recipes import Recipe
from .runrecord import RunRecord
from .runstate import Status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.train", description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="job.json of the extracted bundle")
    parser.add_argument("--model-dir", required=True, help="base model directory (config.json, weights, tokenizer)")
    parser.add_argument("--run-dir", required=True, help="directory of this run (created if missing)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    parser.add_argument("--extra-epochs", type=int, default=0, metavar="N",
                        help="train N epochs beyond the run's previous target (implies --resume)")
    return parser.parse_args(argv)


class Phase:
    """Times a block into run.json's timings."""

    def __init__(self, record: RunRecord, name: str):
        self.record, self.name = record, name

    def __enter__(self):
        print(f"== {self.name}", flush=True)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.record.timing(f"{self.name}_seconds", time.monotonic() - self.t0)


def check_run_dir(run_dir: Path, record: RunRecord, resume: bool) -> None:
    """Refuse to overwrite a finished run or existing checkpoints without --resume / --extra-epochs."""
    previous = record.load_existing()
    if resume:
        return
    if previous and previous.get("status") == Status.SUCCEEDED.value:
        raise InputError(f"{run_dir} already holds a finished run",
                         hint="use a new run directory, or --extra-epochs N to train it further")
    if find_checkpoints(run_dir / "checkpoints"):
        raise InputError(f"{run_dir}/checkpoints already has checkpoints",
                         hint="pass --resume to continue that run, or use a new run directory")


def target_epochs(recipe: Recipe, record: RunRecord, resume: bool, extra: int) -> float:
    """Epochs to train in total: the run's last target when resuming (it may include earlier extras) + extra."""
    if extra < 0:
        raise InputError(f"--extra-epochs must be >= 0 (got {extra})")
    if extra and recipe.max_steps > 0:
        raise InputError(f"--extra-epochs needs an epoch-based recipe, but this job sets max_steps={recipe.max_steps}",
                         hint="raise max_steps in the job's overrides instead")
    previous = record.previous.get("training", {}) if resume else {}
    return float(previous.get("num_train_epochs") or recipe.num_train_epochs) + extra


def training_arguments(recipe: Recipe, run_dir: Path, epochs: float):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(run_dir / "checkpoints"), seed=recipe.seed, data_seed=recipe.seed,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate, num_train_epochs=epochs, max_steps=recipe.max_steps,
        lr_scheduler_type=recipe.lr_scheduler_type, warmup_steps=recipe.warmup_ratio,  # < 1: a fraction of steps
        weight_decay=recipe.weight_decay, max_grad_norm=recipe.max_grad_norm, optim=recipe.optim,
        bf16=recipe.bf16, fp16=recipe.compute_dtype == "float16", use_cpu=recipe.device == "cpu",
        activation_checkpointing=recipe.gradient_checkpointing,          # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_strategy="steps", logging_steps=recipe.logging_steps, save_strategy="steps",
        save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit, eval_strategy="no",
        dataloader_num_workers=recipe.dataloader_num_workers,
        dataloader_pin_memory=recipe.dataloader_pin_memory and recipe.device == "cuda",
        remove_unused_columns=False, label_names=["labels"], include_num_input_tokens_seen="non_padding",
        use_liger_kernel=recipe.liger_kernel, report_to=[], disable_tqdm=True)


def make_trainer(model, tokenizer, args, features, run_dir: Path, recipe: Recipe, attempt: int = 1):
    import torch
    from torch.utils.tensorboard import SummaryWriter
    from transformers import PrinterCallback, Trainer
    from transformers.integrations import TensorBoardCallback

    from .features import Collator, FeatureDataset
    from .metrics import MetricsJsonl

    class AdapterTrainer(Trainer):
        """Checkpoints hold the LoRA weights and the two style rows only, never the full embedding."""

        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            self.model.save_pretrained(output_dir, save_embedding_layers=False)
            self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, Path(output_dir) / "training_args.bin")

    samples_per_step = recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps
    callbacks = [MetricsJsonl(run_dir / "metrics.jsonl", samples_per_step, attempt=attempt),
                 TensorBoardCallback(SummaryWriter(log_dir=str(run_dir / "tensorboard")))]
    trainer = AdapterTrainer(model=model, args=args, train_dataset=FeatureDataset(features.features),
                             data_collator=Collator(tokenizer.pad_token_id), processing_class=tokenizer,
                             callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # MetricsJsonl prints one compact line per logging step instead
    return trainer


def prepare_data(job: Job, recipe: Recipe, model_dir: str, record: RunRecord):
    """Validate the dataset (before any model), then tokenize it with the base tokenizer + style tokens."""
    from .dataset import load_dataset
    from .features import build_features
    from .modeling import chat_template_sha256, prepare_tokenizer

    dataset = load_dataset(job.dataset)
    record.update(dataset={"path": str(job.dataset), "sha256": dataset.sha256, "lines": dataset.lines,
                           **dataset.counts})
    earlier = record.previous.get("dataset", {}).get("sha256")
    if earlier and earlier != dataset.sha256:
        print(f"warning: the dataset changed since the previous attempt of this run ({earlier[:12]} -> "
              f"{dataset.sha256[:12]}); resuming trains the rest of the run on the new data", flush=True)
    tokenizer, style = prepare_tokenizer(model_dir)
    features = build_features(tokenizer, dataset.examples, recipe.chat_template_kwargs, recipe.max_length,
                              recipe.on_overlength)
    record.update(dataset={**record.data["dataset"], **features.summary()}, style_tokens=style.to_dict(),
                  chat_template_sha256=chat_template_sha256(tokenizer))
    if features.overlength:
        print(f"warning: {len(features.overlength)} example(s) longer than max_length={recipe.max_length} tokens "
              f"were left out: {', '.join(s for s, _ in features.overlength[:10])}", flush=True)
    return tokenizer, style, features


def announce_resume(checkpoint: Path | None, resume: bool) -> None:
    if not resume:
        return
    if checkpoint is None:
        print("no complete checkpoint found: training starts from step 0", flush=True)
        return
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    print(f"resuming from {checkpoint.name}: last completed step {state['global_step']}, next step "
          f"{state['global_step'] + 1}, epoch {state.get('epoch', 0):.2f}", flush=True)


def finish_adapter(model, tokenizer, recipe, style, model_dir, run_dir: Path) -> Path:
    """Write RUN/adapter/ atomically (adapter.tmp -> adapter) with payload_meta.json and manifest.json."""
    from .manifest import write_manifest
    from .modeling import adapter_meta, save_adapter

    tmp, final = run_dir / "adapter.tmp", run_dir / "adapter"
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, tokenizer, tmp, adapter_meta(recipe, style, tokenizer, model_dir))
    write_manifest(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def evaluate_in_process(model, tokenizer, recipe: Recipe, run_dir: Path) -> dict:
    from .evaluate import format_table, load_prompts, run_evaluation, write_report

    model.eval()
    model.config.use_cache = True
    report = run_evaluation(model, tokenizer, recipe, load_prompts())
    write_report(run_dir / "eval.json", report)
    print(format_table(report), flush=True)
    return {key: report[key] for key in ("ratio", "passed", "gate", "prompts")} | {
        "mean_tokens": {s: v["mean_tokens"] for s, v in report["styles"].items()}}


def resolve_job(args: argparse.Namespace, record: RunRecord) -> tuple[Job, Recipe, float]:
    """Job, recipe and epoch target; the process environment set up from them."""
    from .runtime_env import apply_runtime_env, apply_torch_threads

    job = read_job(args.job)
    recipe = job.recipe()
    epochs = target_epochs(recipe, record, args.resume or args.extra_epochs > 0, args.extra_epochs)
    env = apply_runtime_env("bf16" if recipe.bf16 else "no")
    apply_torch_threads(recipe.torch_threads)
    record.update(job=job.to_dict(), recipe=recipe.to_dict(), seed=recipe.seed, env=env)
    return job, recipe, epochs


def load_training_model(model_dir: str, recipe: Recipe, style, record: RunRecord):
    from transformers import set_seed

    from .modeling import attach_lora, load_base_model, parameter_counts
    from .runrecord import hardware

    record.update(hardware=hardware())
    set_seed(recipe.seed)  # LoRA initialisation
    model = attach_lora(load_base_model(model_dir, recipe), recipe, style)
    record.update(parameters=parameter_counts(model))
    return model


def fit(model, tokenizer, recipe: Recipe, features, epochs: float, args: argparse.Namespace, record: RunRecord):
    """Train (from the latest complete checkpoint when resuming); returns the trainer."""
    run_dir = Path(args.run_dir)
    resume = args.resume or args.extra_epochs > 0
    checkpoint = latest_complete_checkpoint(run_dir / "checkpoints", remove_incomplete=True) if resume else None
    announce_resume(checkpoint, resume)
    trainer = make_trainer(model, tokenizer, training_arguments(recipe, run_dir, epochs), features, run_dir, recipe,
                           attempt=record.attempt)
    record.data["attempts"][-1]["resumed_from"] = checkpoint.name if checkpoint else None
    record.update(training={"num_train_epochs": epochs, "max_steps": recipe.max_steps,
                            "resumed_from": checkpoint.name if checkpoint else None,
                            "start_step": checkpoint_step(checkpoint) if checkpoint else 0})
    with Phase(record, "train"):
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    record.update(training={**record.data["training"], "global_step": trainer.state.global_step,
                            "epoch": trainer.state.epoch, "train_loss": result.training_loss,
                            "total_steps": trainer.state.max_steps})
    return trainer


def run_training(args: argparse.Namespace, record: RunRecord) -> None:
    job, recipe, epochs = resolve_job(args, record)
    with Phase(record, "prepare_data"):
        tokenizer, style, features = prepare_data(job, recipe, args.model_dir, record)
    with Phase(record, "load_model"):
        model = load_training_model(args.model_dir, recipe, style, record)
    fit(model, tokenizer, recipe, features, epochs, args, record)
    with Phase(record, "save_adapter"):
        adapter = finish_adapter(model, tokenizer, recipe, style, args.model_dir, Path(args.run_dir))
        record.update(adapter={"path": str(adapter), "manifest": str(adapter / "manifest.json")})
    if recipe.eval_after_train:
        with Phase(record, "evaluate"):
            try:
                record.update(eval=evaluate_in_process(model, tokenizer, recipe, Path(args.run_dir)))
            except Exception as exc:  # noqa: BLE001 - the adapter is saved; the run still succeeded
                print(f"warning: evaluation after training failed: {exc!r} "
                      f"(run python -m remote_payload.evaluate on the adapter)", flush=True)
                record.update(eval={"error": f"{type(exc).__name__}: {exc}"})


def _terminate(signum, _frame):
    raise SystemExit(f"terminated by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import quiet_known_warnings

    quiet_known_warnings()
    run_dir = Path(args.run_dir)
    record = RunRecord(run_dir)
    try:
        check_run_dir(run_dir, record, args.resume or args.extra_epochs > 0)
    except InputError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    record.start({"job_file": args.job}, sys.argv if argv is None else ["remote_payload.train", *argv],
                 args.resume, args.extra_epochs)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run_training(args, record)
    except PayloadError as exc:
        record.finish(Status.FAILED.value, exc)
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is recorded
        record.finish(Status.FAILED.value, exc)
        traceback.print_exc()
        return 1
    record.finish(Status.SUCCEEDED.value)
    print(f"run succeeded: adapter in {run_dir / 'adapter'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
