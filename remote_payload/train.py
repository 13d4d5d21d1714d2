"""QLoRA training for every task (verbosity style tokens, classification, generation).

    python -m remote_payload.train --job BUNDLE/job.json --model-dir DIR --run-dir RUN [--resume] [--extra-epochs N]
                                   [--cache-dir DIR] [--clear-cache] [--plan PLAN.json]
                                   [--init-adapter PARENT/adapter [--parent JSON]]

Writes into RUN/: run.json (at start and end; with "best" when the run evaluates), metrics.jsonl (one line per
logging step and per evaluation), tensorboard/, checkpoints/checkpoint-N/ (every save_steps and at every new
best evaluation, at most save_total_limit besides the best), evals/step-N.json (classification answers at each
evaluation), adapter/ (with manifest.json; the best evaluation's with load_best_model_at_end) and, when the
recipe says so, eval.json. `--resume` continues from the latest complete checkpoint with its step, optimizer,
scheduler, RNG state, best-so-far and early-stopping count; `--extra-epochs N` continues a run for N more
epochs than it last aimed for. Tokenized data is cached in --cache-dir (default WORK/cache/features beside
WORK/runs/, else RUN/cache), keyed by everything it depends on; --clear-cache empties it first. `--plan FILE`:
the controller's plan of this run (peak GPU memory, seconds per step), kept in run.json "plan"; at the end the
measured peak and seconds per step go beside it in "plan_check" (remote_payload/plan_check.py).
`--init-adapter DIR`: stage 2, training continues from that parent adapter, loaded trainable (stages.py); the
parent (run id, adapter sha256, ...) goes into run.json "parent" and the new adapter's payload_meta.json.
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

from . import distributed
from .checkpoints import checkpoint_step, find_checkpoints, latest_complete_checkpoint, rebase_best_checkpoint
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
    parser.add_argument("--cache-dir", default=None, help="tokenized-data cache (default: WORK/cache/features)")
    parser.add_argument("--clear-cache", action="store_true", help="empty the tokenized-data cache first")
    parser.add_argument("--plan", default=None, help="plan.json from `orch train` (recorded beside the measured)")
    parser.add_argument("--init-adapter", default=None, help="stage 2: continue from this parent adapter/ folder")
    parser.add_argument("--parent", default=None, help='the parent as the controller knows it: {"run_id", "job", '
                                                       '"source"} (JSON)')
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


def announce_resume(checkpoint: Path | None, resume: bool) -> None:
    if not resume:
        return
    if checkpoint is None:
        print("no complete checkpoint found: training starts from step 0", flush=True)
        return
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    print(f"resuming from {checkpoint.name}: last completed step {state['global_step']}, next step "
          f"{state['global_step'] + 1}, epoch {state.get('epoch', 0):.2f}", flush=True)


def finish_adapter(model, tokenizer, recipe, style, model_dir, run_dir: Path, attention: dict,
                   parent: dict | None = None) -> Path:
    """Write RUN/adapter/ atomically (adapter.tmp -> adapter) with payload_meta.json (and the parent and lineage
    of a stage-2 run) and manifest.json."""
    from .manifest import write_manifest
    from .modeling import adapter_meta, save_adapter
    from .stages import lineage_of

    tmp, final = run_dir / "adapter.tmp", run_dir / "adapter"
    shutil.rmtree(tmp, ignore_errors=True)
    meta = adapter_meta(recipe, style, tokenizer, model_dir, attention)
    if parent:
        meta.update(parent={k: v for k, v in parent.items() if k not in ("lineage", "adapter_dir")},
                    lineage=lineage_of(parent))
    save_adapter(model, tokenizer, tmp, meta)
    write_manifest(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def evaluate_in_process(model, tokenizer, recipe: Recipe, run_dir: Path, eval_examples) -> dict | None:
    """The task's evaluation of the finished adapter -> RUN/eval.json; the summary run.json keeps."""
    from .evaluate import evaluate_task, report_summary, write_report

    model.eval()
    model.config.use_cache = True
    samples = getattr(recipe.evaluation, "samples", None)
    report, text = evaluate_task(model, tokenizer, recipe, (eval_examples or [])[:samples])
    if report is None:
        print(f"evaluation after training skipped: {text}", flush=True)
        return {"skipped": text}
    write_report(run_dir / "eval.json", report)
    print(text, flush=True)
    return report_summary(report)


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


def load_training_model(model_dir: str, recipe: Recipe, style, attention: dict, record: RunRecord,
                        parent: dict | None = None):
    """The 4-bit base with a fresh LoRA, or (stage 2) with the parent adapter loaded trainable."""
    from transformers import set_seed

    from .modeling import attach_lora, load_base_model, parameter_counts
    from .runrecord import hardware
    from .stages import attach_parent

    record.update(hardware=hardware())
    set_seed(recipe.seed)  # LoRA initialisation
    base = load_base_model(model_dir, recipe, attention["chosen"])
    model = attach_parent(base, recipe, style, parent["adapter_dir"]) if parent else attach_lora(base, recipe, style)
    record.update(parameters=parameter_counts(model))
    return model


def effective_batch(recipe: Recipe, rank: distributed.Rank, record: RunRecord, backend: str | None) -> int:
    """per-device x accumulation x processes: printed, and kept in run.json "distributed"."""
    per_device, accum = recipe.per_device_train_batch_size, recipe.gradient_accumulation_steps
    total = per_device * accum * rank.world_size
    print(f"effective batch {total} = per-device {per_device} x accumulation {accum} x {rank.world_size} "
          f"process{'es' if rank.world_size > 1 else ''}", flush=True)
    record.update(distributed={"world_size": rank.world_size, "backend": backend, "per_device_batch": per_device,
                               "gradient_accumulation_steps": accum, "effective_batch": total})
    return total


def fit(model, recipe: Recipe, data, epochs: float, args: argparse.Namespace, record: RunRecord,
        rank: distributed.Rank = distributed.Rank(), backend: str | None = None, extra_callbacks=()):
    """Train (from the latest complete checkpoint when resuming); returns the trainer. In a DDP run every rank
    calls this; rank 0 alone tidies the checkpoints folder, the others wait for it."""
    from .trainer import best_record, make_trainer, training_arguments

    run_dir = Path(args.run_dir)
    resume = args.resume or args.extra_epochs > 0
    checkpoint = (latest_complete_checkpoint(run_dir / "checkpoints", remove_incomplete=rank.is_main)
                  if resume else None)
    if rank.is_main:
        announce_resume(checkpoint, resume)
        if checkpoint is not None:
            rebase_best_checkpoint(checkpoint)
    distributed.barrier(rank)
    evaluates = data.eval_dataset is not None and recipe.eval_steps > 0
    targs = training_arguments(recipe, run_dir, epochs, evaluates, backend=backend)
    samples_per_step = effective_batch(recipe, rank, record, backend) * data.examples_per_item
    trainer = make_trainer(model, data.tokenizer, targs, data, run_dir, recipe, samples_per_step,
                           attempt=record.attempt, main=rank.is_main, extra_callbacks=extra_callbacks)
    record.data["attempts"][-1]["resumed_from"] = checkpoint.name if checkpoint else None
    record.update(training={"num_train_epochs": epochs, "max_steps": recipe.max_steps,
                            "resumed_from": checkpoint.name if checkpoint else None,
                            "start_step": checkpoint_step(checkpoint) if checkpoint else 0})
    with Phase(record, "train"):
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    state = trainer.state
    record.update(training={**record.data["training"], "global_step": state.global_step,
                            "epoch": state.epoch, "train_loss": result.training_loss, "total_steps": state.max_steps,
                            "early_stopped": bool(trainer.control.should_training_stop
                                                  and state.global_step < state.max_steps)},
                  best=best_record(trainer, recipe))
    return trainer


def prepare_in_turn(args: argparse.Namespace, job: Job, recipe: Recipe, record: RunRecord, rank: distributed.Rank):
    """Rank 0 fills the tokenized-data cache first; the other ranks then read it (never two writers)."""
    if not rank.is_main:
        args.clear_cache = False
        distributed.barrier(rank)
    out = prepare(args, job, recipe, record)
    if rank.is_main:
        distributed.barrier(rank)
    return out


def prepare(args: argparse.Namespace, job: Job, recipe: Recipe, record: RunRecord):
    """Data (validated before any model loads) and the attention implementation the model will use."""
    from .attention import choose_attention
    from .packing import PackedCollator
    from .preprocess import default_cache_dir, prepare_data

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(Path(args.run_dir))
    if args.clear_cache:
        from .feature_cache import FeatureCache

        FeatureCache(cache_dir).clear()
        print(f"cleared the tokenized-data cache {cache_dir}", flush=True)
    data = prepare_data(job, recipe, args.model_dir, record, cache_dir)
    attention = choose_attention(recipe, args.model_dir)
    record.update(attention=attention)
    if recipe.packing and attention["chosen"] == "flash_attention_2":
        data.collator = PackedCollator(data.tokenizer.pad_token_id, flash_attention=True)
    return data, attention


def resolve_parent(args: argparse.Namespace, recipe: Recipe, style, record: RunRecord) -> dict | None:
    """Stage 2: the parent adapter checked (manifest, base, style tokens) and recorded in run.json "parent"."""
    from .stages import check_parent, parent_info, read_parent_arg

    if not args.init_adapter:
        return None
    parent = parent_info(args.init_adapter, read_parent_arg(args.parent))
    notes = check_parent(parent, recipe, style, args.model_dir)
    record.update(parent={**parent, "notes": notes})
    print(f"stage 2: continuing from {parent.get('run_id') or parent['source']} (adapter sha256 "
          f"{parent['adapter_sha256'][:12]})" + "".join(f"\n  note: {n}" for n in notes), flush=True)
    return parent


def run_training(args: argparse.Namespace, record: RunRecord, rank: distributed.Rank = distributed.Rank(),
                 rank_file: distributed.RankFile | None = None) -> None:
    job, recipe, epochs = resolve_job(args, record)
    if rank_file is not None:
        rank_file.peer_timeout_s = recipe.ddp_peer_timeout_s
    backend = distributed.init_process_group(rank, recipe.device)
    with Phase(record, "prepare_data"):
        data, attention = prepare_in_turn(args, job, recipe, record, rank)
        parent = resolve_parent(args, recipe, data.style, record)
    with Phase(record, "load_model"):
        model = load_training_model(args.model_dir, recipe, data.style, attention, record, parent)
    callbacks = [distributed.step_callback(rank_file)] if rank_file else []
    trainer = fit(model, recipe, data, epochs, args, record, rank, backend, callbacks)
    if rank_file is not None:
        rank_file.doc.update(step=trainer.state.global_step, weights_sha256=distributed.weights_sha256(trainer.model))
    if not rank.is_main:
        return   # rank 0 alone writes the adapter and evaluates it
    with Phase(record, "save_adapter"):
        adapter = finish_adapter(model, data.tokenizer, recipe, data.style, args.model_dir, Path(args.run_dir),
                                 attention, parent)
        record.update(adapter={"path": str(adapter), "manifest": str(adapter / "manifest.json")})
    if recipe.evaluation.after_train:
        with Phase(record, "evaluate"):
            try:
                record.update(eval=evaluate_in_process(model, data.tokenizer, recipe, Path(args.run_dir),
                                                       data.eval_examples))
            except Exception as exc:  # noqa: BLE001 - the adapter is saved; the run still succeeded
                print(f"warning: evaluation after training failed: {exc!r} "
                      f"(run python -m remote_payload.evaluate on the adapter)", flush=True)
                record.update(eval={"error": f"{type(exc).__name__}: {exc}"})


def finish(record: RunRecord, status: str, error: BaseException | None = None,
           rank_file: distributed.RankFile | None = None) -> None:
    """Close run.json (status, peak memory), then put what was measured beside the plan (a failed run too: an
    out-of-memory run is the one whose plan most needs checking); last, this rank's completion record."""
    from .plan_check import check

    record.finish(status, error)
    try:
        record.update(plan_check=check(record.data, record.path.parent / "metrics.jsonl"))
    except Exception as exc:  # noqa: BLE001 - the comparison must never cost the run its record
        record.update(plan_check={"error": f"{type(exc).__name__}: {exc}"})
    if rank_file is not None:
        rank_file.finish(status, error=None if error is None else f"{type(error).__name__}: {error}")


def _terminate(signum, _frame):
    raise SystemExit(f"terminated by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import quiet_known_warnings

    quiet_known_warnings()
    run_dir = Path(args.run_dir)
    rank = distributed.current()
    distributed.route_output(run_dir, rank)
    record = RunRecord(run_dir, writes=rank.is_main)   # rank 0 alone keeps run.json
    try:
        check_run_dir(run_dir, record, args.resume or args.extra_epochs > 0)
    except InputError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    record.start({"job_file": args.job}, sys.argv if argv is None else ["remote_payload.train", *argv],
                 args.resume, args.extra_epochs)
    from .plan_check import read_plan

    record.update(plan=read_plan(args.plan))
    signal.signal(signal.SIGTERM, _terminate)
    rank_file = distributed.RankFile(run_dir, rank).start() if rank.distributed else None
    try:
        run_training(args, record, rank, rank_file)
    except PayloadError as exc:
        finish(record, Status.FAILED.value, exc, rank_file)
        print(f"train: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is recorded
        finish(record, Status.FAILED.value, exc, rank_file)
        traceback.print_exc()
        return 1
    finish(record, Status.SUCCEEDED.value, None, rank_file)
    if not rank.is_main:
        print(f"rank {rank.rank} succeeded", flush=True)
        return 0
    print(f"run succeeded: adapter in {run_dir / 'adapter'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
