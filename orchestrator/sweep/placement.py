"""Which pending points go on which free GPUs, and when a run counts as lost. Pure functions.

Free GPUs come from each instance's probe (foreign-busy GPUs never count, orchestrator/gpu_pick.py) minus the GPUs
that orch runs there hold. Points are placed in order, each on the first instance (in the sweep's order) that
has `gpus` free GPUs, lowest first; a run of several GPUs never spans instances.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    instance: str
    gpus: tuple[int, ...]


def place(pending: list[str], free: dict[str, list[int]], gpus_per_run: int,
          order: list[str] | None = None) -> list[tuple[str, Slot]]:
    """[(point, slot)] for as many pending points as the free GPUs hold."""
    left = {name: sorted(gpus) for name, gpus in free.items()}
    out: list[tuple[str, Slot]] = []
    names = [n for n in (order or sorted(left)) if n in left]
    for point in pending:
        for name in names:
            if len(left[name]) >= gpus_per_run:
                taken, left[name] = left[name][:gpus_per_run], left[name][gpus_per_run:]
                out.append((point, Slot(name, tuple(taken))))
                break
        else:
            break          # no room anywhere: the rest waits for a run to finish
    return out


def free_gpus(usable: list[int], held: set[int]) -> list[int]:
    return [g for g in usable if g not in held]


def is_lost(reachable: bool, last_heartbeat: float | None, now: float, lost_after_s: float) -> bool:
    """A run on an instance that does not answer is lost once its last heartbeat seen is older than
    `lost_after_s` (a run never seen beating counts from when it was claimed: pass that time)."""
    if reachable:
        return False
    return last_heartbeat is None or now - last_heartbeat > lost_after_s
