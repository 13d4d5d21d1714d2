"""Preflight's "GPU memory plan" check: does the job's planned peak fit in what the GPU has free right now?

Free memory is the job's GPU's total minus what nvidia-smi says is in use (seed 000 names OOM from a stale GPU
process as a top failure). The plan (orchestrator/plan) needs the model's config.json, read from the job's S3
prefix with one quick GET by the preflight runner (beside the weights listing); when it cannot be read from
here the check passes and says the memory was not
planned, as the weights check does for a bucket only the instance can see. Nothing is checked for CPU recipes,
for instances that expect no GPU, or when the job's recipe or dataset is bad (the "job inputs" check says so).
"""

from __future__ import annotations

from .errors import OrchError

MIB = 1024 * 1024


def job_gpu_entry(probe: dict, job) -> dict | None:
    gpus = probe.get("gpus") or []
    return next((g for g in gpus if g.get("index") == job.gpu), gpus[0] if gpus else None)


def planner_gpu(entry: dict):
    from .plan import GPU, find_gpu

    total = (entry.get("memory_total_mib") or 0) * MIB
    try:
        return find_gpu(entry.get("name") or "?", total)
    except OrchError:   # memory is all this check needs: an unknown GPU still has nvidia-smi's total
        return GPU(entry.get("name") or "?", total, 1.0, 1.0, "nvidia-smi (not in the planner's table)")


def needs_plan(instance, job) -> bool:
    """Whether preflight plans this job's memory (a CUDA recipe on an instance that expects a GPU)."""
    from .recipe_files import resolve_job_recipe

    if job is None or not instance.expect.gpu:
        return False
    try:
        return resolve_job_recipe(job).recipe.device == "cuda"
    except OrchError:   # a bad recipe is refused by the input checks, with file:line
        return False


def memory_check(instance, probe: dict, job, config) -> tuple[bool, str, str | None] | None:
    """(ok, detail, fix) of the check, or None when there is nothing to plan. `config`: the job's model config
    (model_config.ModelConfig, read by the preflight runner beside the weights listing) or the OrchError that
    kept it from being read."""
    from .plan import estimate_from_dataset, fits, make_plan, shape_from_config

    entry = job_gpu_entry(probe, job)
    if job is None or not instance.expect.gpu or entry is None or not entry.get("memory_total_mib"):
        return None
    from .recipe_files import resolve_job_recipe

    try:
        recipe = resolve_job_recipe(job).recipe
    except OrchError:   # a bad recipe is refused by the input checks, with file:line
        return None
    if recipe.device != "cuda":
        return None
    try:
        if isinstance(config, OrchError) or config is None:
            raise config or OrchError("the model's config.json was not read")
        tokens = estimate_from_dataset(job.dataset, shape_from_config(config.doc, config.source).model_type, recipe)
        plan = make_plan(config.doc, recipe, gpu=planner_gpu(entry), tokens=tokens)
    except OrchError as exc:
        return True, (f"not planned ({exc.message}); `orch plan {job.name} --model-config FILE` plans it "
                      "from a local config.json"), None
    free = (entry["memory_total_mib"] - (entry.get("memory_used_mib") or 0)) * MIB
    ok, detail, fix = fits(plan, free)
    return ok, f"{instance.name}: GPU {entry.get('index', 0)} {detail}", \
        None if ok else f"{fix}; `orch plan {job.name}` shows the whole breakdown (or train with --force)"
