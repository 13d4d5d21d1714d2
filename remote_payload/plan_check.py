"""Planned vs measured, in `RUN/run.json`: every real run checks the planner (orchestrator/plan/).

`orch train` computes the plan on the controller and ships it as `plan.json` (orchestrator/run_plan.py); the
run reads it at start (`--plan FILE`, run.json "plan") and, at the end, puts beside it what it measured
(run.json "plan_check"):

    gpu_allocated_bytes   torch.cuda.max_memory_allocated() vs the plan's peak_allocated
    gpu_reserved_bytes    torch.cuda.max_memory_reserved() vs the plan's peak_reserved
    seconds_per_step      metrics.jsonl vs the plan's time per optimizer step (see `measured_seconds_per_step`)
    trainable_params      run.json parameters.trainable vs the planner's LoRA (+ style rows) count
    steps                 the optimizer steps the run reached vs the recipe's (fewer after early stopping)

Each entry is {"planned", "measured", "ratio" (measured / planned), "why"}: `why` says why a side is absent --
a CPU recipe is not planned for GPU memory or time, a CPU run measures no GPU memory -- so a reader never
mistakes a missing figure for a zero; "not_planned" says what kept the whole plan from being made (a config.json
nobody could read, a run not started by `orch train`), once. Stdlib only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NOT_STARTED_BY_ORCH = "no plan was given (--plan): the run was not started by `orch train`"


def read_plan(path: str | Path | None) -> dict[str, Any]:
    """run.json "plan": the plan.json the controller shipped, or why there is none. Never raises."""
    if path is None:
        return {"planned": {}, "absent": {"all": NOT_STARTED_BY_ORCH}}
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"planned": {}, "absent": {"all": f"the plan file {path} cannot be read ({exc})"}}
    if not isinstance(doc, dict) or not isinstance(doc.get("planned"), dict):
        return {"planned": {}, "absent": {"all": f"{path} is not a plan written by `orch train`"}}
    return doc


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def measured_seconds_per_step(metrics_path: Path, attempt: int, save_steps: int = 0) -> dict[str, Any]:
    """Seconds per optimizer step from this attempt's step records in metrics.jsonl.

    The time between two consecutive step records over the steps between them, summed over every such interval
    with neither an evaluation nor a checkpoint save in it (the planner predicts training steps, not those);
    the interval before the first record (start-up, CUDA initialisation, first allocations) is never counted.
    {"value", "intervals", "steps", "how"} -- "value" None with "why" when no clean interval exists."""
    seconds = steps = intervals = 0
    previous: dict[str, Any] | None = None
    evaluated = False
    for record in _records(metrics_path):
        if record.get("attempt") != attempt:
            continue
        event = record.get("event", "step")
        if event == "eval":
            evaluated = True
        if event != "step":
            continue
        step, elapsed = record.get("step"), record.get("elapsed_seconds")
        if not isinstance(step, int) or not isinstance(elapsed, (int, float)):
            continue
        if previous is not None and step > previous["step"] and not evaluated \
                and not _saves_between(previous["step"], step, save_steps):
            seconds += elapsed - previous["elapsed_seconds"]
            steps += step - previous["step"]
            intervals += 1
        previous, evaluated = {"step": step, "elapsed_seconds": elapsed}, False
    how = ("logging intervals of this attempt without an evaluation or a checkpoint save, the first one "
           "(start-up) excluded")
    if not steps or seconds <= 0:
        return {"value": None, "intervals": 0, "steps": 0, "how": how,
                "why": "no logging interval without an evaluation or a checkpoint save in metrics.jsonl "
                       "(too few steps logged: lower logging_steps to measure it)"}
    return {"value": round(seconds / steps, 4), "intervals": intervals, "steps": steps, "how": how}


def _saves_between(start: int, end: int, every: int) -> bool:
    """A save happens after the log record of its step: an interval (start, end] holds one at a multiple of
    `every` in [start, end)."""
    if every <= 0:
        return False
    first = max(every, int(math.ceil(start / every)) * every)
    return first < end


def _entry(planned, measured, why_planned: str | None, why_measured: str | None) -> dict[str, Any]:
    ratio = None
    if isinstance(planned, (int, float)) and isinstance(measured, (int, float)) and planned:
        ratio = round(measured / planned, 3)
    why = [w for w, value in ((why_planned, planned), (why_measured, measured)) if value is None and w]
    return {"planned": planned, "measured": measured, "ratio": ratio, "why": "; ".join(why) or None}


def _measured_gpu(data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    peak = data.get("peak_memory")
    if not isinstance(peak, dict):
        return {}, "the peak memory could not be read at the end of the run"
    if "gpu_max_allocated_bytes" not in peak:
        hardware = data.get("hardware") or {}
        if not hardware.get("cuda_available"):
            return {}, "trained on CPU: no CUDA device, so torch.cuda.max_memory_allocated/reserved were not measured"
        return {}, "the GPU peak was not recorded"
    return peak, None


def check(data: dict[str, Any], metrics_path: Path) -> dict[str, Any]:
    """run.json "plan_check" from the rest of run.json (plan, peak_memory, hardware, parameters, training)."""
    plan = data.get("plan") or {"planned": {}, "absent": {"all": NOT_STARTED_BY_ORCH}}
    planned, absent = plan.get("planned") or {}, plan.get("absent") or {}

    def why_planned(key: str) -> str | None:
        if absent.get(key):
            return f"not planned: {absent[key]}"
        return None if absent.get("all") else "not planned"      # "all": said once, in "not_planned"

    peak, why_gpu = _measured_gpu(data)
    recipe = data.get("recipe") or {}
    attempt = (data.get("attempts") or [{}])[-1].get("attempt", 1)
    speed = measured_seconds_per_step(metrics_path, attempt, int(recipe.get("save_steps") or 0))
    training = data.get("training") or {}
    reached = training.get("global_step")
    doc = {
        "gpu_allocated_bytes": _entry(planned.get("peak_allocated_bytes"), peak.get("gpu_max_allocated_bytes"),
                                      why_planned("gpu_memory"), f"not measured: {why_gpu}"),
        "gpu_reserved_bytes": _entry(planned.get("peak_reserved_bytes"), peak.get("gpu_max_reserved_bytes"),
                                     why_planned("gpu_memory"), f"not measured: {why_gpu}"),
        "seconds_per_step": _entry(planned.get("seconds_per_step"), speed["value"], why_planned("seconds_per_step"),
                                   f"not measured: {speed.get('why')}"),
        "trainable_params": _entry(planned.get("trainable_params"), (data.get("parameters") or {}).get("trainable"),
                                   why_planned("trainable_params"), "not measured: the model was not loaded"),
        "steps": _entry(planned.get("steps"), reached if isinstance(reached, int) else None, why_planned("steps"),
                        "not measured: training did not run"),
    }
    if training.get("early_stopped"):
        doc["steps"]["note"] = "early stopping ended the run before the planned steps"
    doc["seconds_per_step"]["measured_how"] = speed["how"]
    doc["not_planned"] = absent.get("all")
    doc["gpu"] = (plan.get("gpu") or {}).get("name")
    doc["device"] = plan.get("device") or recipe.get("device")
    return doc
