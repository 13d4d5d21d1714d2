"""A sweep's status, rebuilt from the runs on its instances (their supervise.json carries the sweep name, the
point and its params): one row per point, with its state, where it ran, its metric, and the best marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import Point, SweepSpec

DONE = ("finished", "failed", "stopped")
ACTIVE = ("starting", "running", "unknown")


@dataclass
class Row:
    point: Point
    state: str = "pending"          # pending | starting | running | finished | failed | stopped | lost
    instance: str | None = None
    gpus: tuple[int, ...] = ()
    run_id: str | None = None
    metric: float | None = None
    best: bool = False
    attempts: int = 0               # runs seen for this point (a requeued point has more than one)

    @property
    def where(self) -> str:
        return f"{self.instance}:{','.join(map(str, self.gpus))}" if self.instance else ""

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point.key, "params": self.point.params, "state": self.state,
                "instance": self.instance, "gpus": list(self.gpus), "run_id": self.run_id, "metric": self.metric,
                "best": self.best, "attempts": self.attempts}


def metric_of(run: dict, metric: str) -> float | None:
    """The run's value of `metric`: its best evaluation when that is the metric, else its last metrics record."""
    best = run.get("best") or {}
    if best.get("metric") in (metric, metric.removeprefix("eval_")) and isinstance(best.get("value"), (int, float)):
        return float(best["value"])
    last = run.get("last_metrics") or {}
    for key in (metric, f"eval_{metric}"):
        if isinstance(last.get(key), (int, float)):
            return float(last[key])
    return None


def _rank(run: dict, lost: set[str]) -> tuple:
    """Which of a point's runs speaks for it: an active or finished one before a failed/lost one, then the latest."""
    state = run.get("state")
    if run.get("run_id") in lost:
        state = "lost"
    weight = 2 if state in ACTIVE or state == "finished" else 1 if state in DONE else 0
    return weight, run.get("started_at") or 0


def build(spec: SweepSpec, points: list[Point], runs: list[tuple[str, dict]], lost: set[str] = frozenset()
          ) -> list[Row]:
    """Rows from `runs` [(instance, run)] (every run on the sweep's instances); `lost`: run ids judged lost."""
    mine: dict[str, list[tuple[str, dict]]] = {}
    for instance, run in runs:
        meta = run.get("meta") or {}
        if meta.get("sweep") == spec.name and meta.get("point"):
            mine.setdefault(meta["point"], []).append((instance, run))
    rows = []
    for point in points:
        row = Row(point)
        seen = mine.get(point.key, [])
        row.attempts = len(seen)
        if seen:
            instance, run = max(seen, key=lambda item: _rank(item[1], lost))
            meta = run.get("meta") or {}
            row.instance, row.run_id = instance, run.get("run_id")
            row.gpus = tuple(meta.get("gpus") or [meta.get("gpu")])
            row.state = "lost" if run.get("run_id") in lost else run.get("state") or "unknown"
            row.metric = metric_of(run, spec.metric) if row.state == "finished" else None
        rows.append(row)
    scored = [r for r in rows if r.metric is not None]
    if scored:
        pick = min if spec.goal == "min" else max
        pick(scored, key=lambda r: r.metric).best = True
    return rows


def table_rows(rows: list[Row]) -> list[tuple]:
    return [(("* " if r.best else "  ") + r.point.label, r.state, r.where, "" if r.metric is None else f"{r.metric:.4f}",
             r.run_id or "") for r in rows]


HEADERS = ["params (* best)", "state", "instance:gpu", "metric", "run"]
