"""`orch plan JOB`: will the job fit its GPU, what is the largest batch / length that does, how long will it take."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..errors import InputError
from ..output import emit_json, say, table


def target_gpu(instance, gpu_name: str | None, gpus: int | None):
    """(GPU, count): --gpu / --gpus, else the instance's expect.gpu / expect.gpu_count."""
    from ..plan import find_gpu

    name = gpu_name or instance.expect.gpu
    if not name:
        raise InputError(f"no target GPU for instance {instance.name}",
                         hint=f"pass --gpu NAME (e.g. A10G), or set expect.gpu in {instance.origin('expect.gpu')}")
    return find_gpu(name), gpus or max(1, instance.expect.gpu_count)


def build_plan(job, instance, s3, *, gpu_name=None, gpus=None, model_config=None, seqlen=None):
    """(plan, config source) for a job, reading what it needs from the inventory, S3 or the instance."""
    from ..model_config import load_model_config
    from ..recipe_files import resolve_job_recipe
    from ..plan import estimate_from_dataset, from_seqlen_report, make_plan, shape_from_config

    recipe = resolve_job_recipe(job).recipe      # InputError with file:line for a bad recipe or override
    gpu, count = target_gpu(instance, gpu_name, gpus)
    config = load_model_config(job, instance, s3, model_config)
    model_type = shape_from_config(config.doc, config.source).model_type
    tokens = from_seqlen_report(seqlen) if seqlen else estimate_from_dataset(job.dataset, model_type, recipe)
    return make_plan(config.doc, recipe, gpu=gpu, gpus=count, tokens=tokens), config


@cli.command("plan")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory (picks the job bound to it).")
@click.option("--gpu", "gpu_name", metavar="NAME", help="Target GPU (A10G, L4, A100 40GB, A100 80GB, H100, H200) "
                                                        "[default: the instance's expect.gpu].")
@click.option("--gpus", type=click.IntRange(1), help="Data-parallel GPUs [default: expect.gpu_count].")
@click.option("--model-config", type=click.Path(dir_okay=False), help="The model's config.json (else read from "
                                                                      "the weights' S3 prefix, else the instance).")
@click.option("--seqlen", type=click.Path(dir_okay=False, exists=True),
              help="A `python -m remote_payload.seqlen --json` report: real token counts instead of an estimate.")
@common
def plan_cmd(app: App, job, instance, gpu_name, gpus, model_config, seqlen):
    """Predict the job's peak GPU memory by component, what fits the GPU, and the time per step and epoch.

    Nothing runs on the instance (it is only read from when the weights' S3 prefix cannot be). Exit 0 when the
    plan fits the GPU, 1 when it does not (with what to change), 2 on bad input.
    """
    from ..plan import fits

    found_job, target = app.inventory.resolve(job, instance)
    plan, config = build_plan(found_job, target, app.inventory.s3_settings(found_job, target), gpu_name=gpu_name,
                              gpus=gpus, model_config=model_config, seqlen=seqlen)
    ok, detail, fix = fits(plan, plan.gpu.memory_bytes)
    if app.json:
        emit_json({"ok": ok, "job": found_job.name, "instance": target.name, "recipe": found_job.recipe,
                   "model_config": {"source": config.source, "tried": config.tried},
                   "fits": {"ok": ok, "detail": detail, "fix": fix}, "plan": plan.to_json()})
    else:
        show(plan, found_job, config, ok, detail, fix)
    return 0 if ok else 1


def _gib(n: float) -> str:
    from ..plan import GiB

    return f"{n / GiB:.2f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def show(plan, job, config, ok: bool, detail: str, fix: str | None) -> None:
    shape, setup, mem = plan.shape, plan.setup, plan.memory
    say(f"plan for job {job.name} ({job.recipe}): {shape.model_type}, {shape.layers} layers x {shape.hidden}, "
        f"{shape.total_params / 1e9:.2f}B parameters, on {setup.gpus} x {plan.gpu.name} "
        f"({plan.gpu.memory_bytes / 2**30:.1f} GiB)")
    say(f"  config.json from {config.source}" + (f" (after: {'; '.join(config.tried)})" if config.tried else ""),
        style="dim")
    peak = mem.peak_phase
    rows = [(c.name, _gib(c.bytes), "yes" if (not c.phases or peak in c.phases) else "", c.assumption)
            for c in mem.components]
    table(f"peak GPU memory, GiB (batch {mem.batch} x {mem.seq} tokens; peak at: {peak})",
          ["component", "GiB", "at peak", "assumes"], rows)
    say(f"  peak allocated {_gib(mem.peak_allocated)} GiB (torch.cuda.max_memory_allocated), reserved "
        f"~{_gib(mem.peak_reserved)} GiB (+10% allocator slack), + CUDA context = {_gib(mem.device_bytes)} GiB "
        f"of the GPU")
    say(f"  largest per-device batch at {mem.seq} tokens: {plan.max_batch}; longest max_length at batch "
        f"{setup.batch}: {plan.max_length}")
    if plan.tokens is not None:
        say(f"  tokens: {plan.tokens.source}, mean {plan.tokens.mean:.0f}, longest {plan.tokens.longest} "
            f"({plan.tokens.assumption})", style="dim")
    if plan.time is not None:
        t = plan.time
        total = f"; {plan.epochs:g} epochs ~{_duration(plan.seconds_per_epoch * plan.epochs)}" if plan.epochs else ""
        say(f"  time: ~{t.seconds_per_step:.1f} s/step ({t.tokens_per_second:.0f} tokens/s), "
            f"{plan.steps_per_epoch} step{'s' if plan.steps_per_epoch != 1 else ''}/epoch "
            f"~{_duration(plan.seconds_per_epoch)}{total}")
        say(f"    ({t.assumption})", style="dim")
    for note in plan.notes:
        say(f"  note: {note}", style="yellow")
    if ok:
        say(f"fits: {detail}", style="bold green")
    else:
        say(f"DOES NOT FIT: {detail}", style="bold red")
        say(f"  fix: {fix}", style="yellow")
