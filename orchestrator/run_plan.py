"""The plan a run records: what `orch train` expects of it, computed on the controller before it starts.

    doc = plan_document(job, instance, s3, probe=preflight_probe, transport=open_connection)
    plan_file = ship(transport, instance, doc)       # work_dir/plans/<id>/plan.json -> `train --plan`

The job's recipe (YAML resolved), its model's config.json (`model_config.load_model_config`: the weights' S3 prefix
with the job's S3 settings, else the instance's synced copy), the dataset's token counts (estimated: the
controller has no tokenizer) and the job's GPU as preflight's nvidia-smi saw it (else the instance's
`expect.gpu`) go through the planner (orchestrator/plan/). `orch train` plans after the deploy, so that the
instance's synced config.json is there when S3 cannot be read from the controller (a bucket only the instance's
role sees). The document travels to the instance as its own content-addressed folder,
`work_dir/plans/<id>/plan.json` (`ship`: install.py, under the deploy lock, verified like the other folders): not
in job.json, whose folder holds the datasets -- a plan that changes (another GPU, a planner fix) must never ship
them again -- and not on the command line, which `ps` shows for the life of the run. The payload keeps it in
run.json "plan" and puts what it measured beside it (remote_payload/plan_check.py).

    {"format": 1, "job", "instance", "recipe", "device": "cuda" | "cpu", "gpu": {...} | null,
     "model_config": {"source", "tried"} | null,
     "planned": {"peak_allocated_bytes", "peak_reserved_bytes", "device_bytes", "seconds_per_step",
                 "trainable_params", "total_params", "steps", "steps_per_epoch"},   # only what was planned
     "absent": {"gpu_memory" | "seconds_per_step" | "all": why},                    # and why the rest is not
     "plan": the planner's full breakdown (Plan.to_json()) | null}

A plan that cannot be made never stops a run: it says why. A CPU recipe (the tiny test recipes) is not planned
for GPU memory or time; what does not depend on the device -- parameters, steps -- is still planned.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import OrchError

FORMAT = 1
CPU_RECIPE = "the recipe trains on CPU (device: cpu): the planner plans GPU memory and GPU step times only"


def plan_document(job, instance, s3, *, probe: dict | None = None, transport=None) -> dict[str, Any]:
    """plan.json for a run of `job` on `instance`; never raises for what keeps a plan from being made."""
    doc: dict[str, Any] = {"format": FORMAT, "job": job.name, "instance": instance.name, "recipe": job.recipe,
                           "device": None, "gpu": None, "model_config": None, "planned": {}, "absent": {},
                           "plan": None}
    try:
        _fill(doc, job, instance, s3, probe, transport)
    except OrchError as exc:
        doc["absent"]["all"] = _first_line(exc.message)
    except Exception as exc:  # noqa: BLE001 - a planner bug must not keep the run from starting; it is recorded
        doc["absent"]["all"] = f"the planner failed ({type(exc).__name__}: {exc}); please report it"
    return doc


def _fill(doc: dict, job, instance, s3, probe, transport) -> None:
    from .model_config import load_model_config
    from .plan import estimate_from_dataset, make_plan, setup_from_recipe, shape_from_config
    from .plan import states
    from .recipe_files import resolve_job_recipe

    recipe = resolve_job_recipe(job).recipe
    doc["device"] = recipe.device
    config = load_model_config(job, instance, s3, transport=transport)
    doc["model_config"] = {"source": config.source, "tried": config.tried}
    shape = shape_from_config(config.doc, config.source)
    setup = setup_from_recipe(recipe)
    tokens = estimate_from_dataset(job.dataset, shape.model_type, recipe)
    gpu, in_table, gpu_why = target_gpu(instance, job, probe) if recipe.device == "cuda" else (None, False, CPU_RECIPE)
    # a CPU recipe still needs a GPU to call the planner with: only its device-independent figures are kept
    plan = make_plan(config.doc, recipe, gpu=gpu or "A10G", tokens=tokens, setup=setup)
    planned = doc["planned"]
    planned.update(trainable_params=states.trainable_params(shape, setup), total_params=shape.total_params,
                   steps_per_epoch=plan.steps_per_epoch, steps=_steps(recipe, plan))
    if gpu is None:
        doc["absent"].update(gpu_memory=gpu_why, seconds_per_step=gpu_why)
        return
    doc["gpu"] = gpu.to_json()
    doc["plan"] = plan.to_json()
    memory = plan.memory
    planned.update(peak_allocated_bytes=memory.peak_allocated, peak_reserved_bytes=memory.peak_reserved,
                   device_bytes=memory.device_bytes)
    if in_table and plan.time is not None:
        planned["seconds_per_step"] = round(plan.time.seconds_per_step, 4)
    else:
        doc["absent"]["seconds_per_step"] = (f"the {gpu.name} is not in the planner's throughput table "
                                             "(orchestrator/plan/gpus.py)")


def _first_line(text: str, limit: int = 400) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "?"
    return line if len(line) <= limit else line[:limit] + "..."


def target_gpu(instance, job, probe: dict | None):
    """(GPU, in the planner's table, None) the job will train on: preflight's nvidia-smi entry for the job's GPU
    (a GPU the table lacks keeps nvidia-smi's memory, but has no throughput to time steps with), else the
    instance's expect.gpu; (None, False, why) when neither names one."""
    from .memory_check import job_gpu_entry, planner_gpu
    from .plan import find_gpu

    entry = job_gpu_entry(probe or {}, job)
    if entry is not None and entry.get("memory_total_mib"):
        try:
            find_gpu(entry.get("name") or "?", entry["memory_total_mib"] * 1024 * 1024)
            in_table = True
        except OrchError:
            in_table = False
        return planner_gpu(entry), in_table, None
    if instance.expect.gpu:
        try:
            return find_gpu(instance.expect.gpu), True, None
        except OrchError as exc:
            return None, False, f"expect.gpu {instance.expect.gpu!r}: {exc.message}"
    return None, False, "no GPU: preflight saw none and the instance sets no expect.gpu"


def _steps(recipe, plan) -> int | None:
    if recipe.max_steps > 0:
        return recipe.max_steps
    if plan.steps_per_epoch is None or plan.epochs is None:
        return None
    return int(math.ceil(plan.steps_per_epoch * plan.epochs))


def ship(transport, instance, doc: dict[str, Any], say=None) -> str:
    """Install the plan on the instance (nothing is sent when the same plan is there); its plan.json path."""
    import posixpath

    from .bundle import build_plan
    from .remote import Remote

    remote = Remote(transport, instance)
    archive = build_plan(doc)
    folder = remote.layout.plan(archive.id)
    remote.install({"plan": (folder, archive)}, holder={"job": doc.get("job"), "what": "plan"}, say=say)
    return posixpath.join(folder, "plan.json")


LABELS = (("gpu_allocated_bytes", "peak GPU memory allocated"), ("gpu_reserved_bytes", "peak GPU memory reserved"),
          ("seconds_per_step", "seconds per step"), ("trainable_params", "trainable parameters"),
          ("steps", "optimizer steps"))


def _shown(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("_bytes"):
        return f"{value / 2 ** 30:.2f} GiB"
    if key == "seconds_per_step":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:,}"


def check_rows(check: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(quantity, planned, measured, measured/planned) rows of run.json's plan_check."""
    return [(label, _shown(key, entry.get("planned")), _shown(key, entry.get("measured")),
             "" if entry.get("ratio") is None else f"{entry['ratio']:.2f}")
            for key, label in LABELS if isinstance(entry := check.get(key), dict)]


def show_check(check: dict[str, Any] | None, run_id: str) -> None:
    """`orch status --run ID`: the plan against what the run measured, and why any figure is absent."""
    from .output import say, table

    if not check:
        say(f"  {run_id}: no plan recorded (the run predates plans, or has not finished: run.json gets its "
            "plan_check at the end)", style="yellow")
        return
    if check.get("error"):
        say(f"  {run_id}: comparing the plan failed: {check['error']}", style="yellow")
        return
    where = check.get("gpu") or (f"device {check['device']}" if check.get("device") else "?")
    if check.get("not_planned"):
        say(f"  {run_id}: no plan: {check['not_planned']}", style="yellow")
    table(f"planned vs measured, run {run_id} ({where})", ["quantity", "planned", "measured", "measured/planned"],
          check_rows(check))
    notes: dict[str, list[str]] = {}                    # one line per reason, naming every quantity it explains
    for key, label in LABELS:
        entry = check.get(key) or {}
        for note in (entry.get("why"), entry.get("note")):
            if note:
                notes.setdefault(note, []).append(label)
    for note, labels in notes.items():
        say(f"  {', '.join(labels)}: {note}", style="dim")
