"""Which GPUs of an instance a run may take: pure rules over the preflight probe's `nvidia-smi` facts.

A GPU is free for orch when it matches the instance's expected model and no process holds more than
`expect.max_gpu_used_mib` on it (a foreign process). orch's own runs are not judged here: they hold the GPU
locks, which only the instance's supervisor takes, so a pick that collides with one is refused there.
`orch train --gpus N` and the sweep placement (orchestrator/sweep/placement.py) both ask here.
"""

from __future__ import annotations

from .errors import CheckFailed


def _matches(want: str | None, name: str) -> bool:
    return not want or want.lower() in name.lower()


def foreign_busy(probe: dict, max_used_mib: int) -> dict[int, str]:
    """{GPU index: why} for the GPUs another process holds memory on."""
    procs = probe.get("gpu_processes") or []
    busy: dict[int, str] = {}
    for gpu in probe.get("gpus") or []:
        holders = [p for p in procs if (p.get("gpu_uuid") == gpu.get("uuid") or p.get("gpu_index") == gpu.get("index"))
                   and (p.get("used_mib") or 0) > max_used_mib]
        if holders:
            busy[gpu.get("index")] = "; ".join(f"pid {p.get('pid')} ({p.get('name') or '?'}) holds "
                                               f"{p.get('used_mib')} MiB" for p in holders)
        elif (gpu.get("memory_used_mib") or 0) > max_used_mib:
            busy[gpu.get("index")] = f"{gpu.get('memory_used_mib')} MiB in use by processes not visible here"
    return busy


def usable_gpus(probe: dict, want_model: str | None, max_used_mib: int) -> list[int]:
    """Indices of the GPUs of the expected model that no foreign process holds, in order."""
    busy = foreign_busy(probe, max_used_mib)
    return sorted(g["index"] for g in probe.get("gpus") or []
                  if isinstance(g.get("index"), int) and _matches(want_model, g.get("name") or "")
                  and g["index"] not in busy)


def all_gpus(probe: dict, want_model: str | None) -> list[int]:
    return sorted(g["index"] for g in probe.get("gpus") or []
                  if isinstance(g.get("index"), int) and _matches(want_model, g.get("name") or ""))


def choose(instance_name: str, wanted: int | None, usable: list[int], every: list[int],
           taken: frozenset[int] = frozenset()) -> list[int]:
    """The GPUs of one run: `wanted` of the usable ones not `taken` (lowest first); None = all of the instance's
    GPUs, every one of which must be usable. Raises CheckFailed saying what is missing."""
    free = [g for g in usable if g not in taken]
    if wanted is None:
        missing = [g for g in every if g not in free]
        if not every or missing:
            raise CheckFailed(f"{instance_name}: --gpus all needs every GPU free, but "
                              f"{'it has none' if not every else 'GPU ' + ', '.join(map(str, missing)) + ' is not'}",
                              hint="wait for those GPUs, or ask for fewer with --gpus N")
        return list(every)
    if len(free) < wanted:
        raise CheckFailed(f"{instance_name}: {wanted} GPUs wanted, {len(free)} free "
                          f"({', '.join(map(str, free)) or 'none'})",
                          hint="wait for a run to finish, stop one (`orch stop`), or ask for fewer with --gpus N")
    return free[:wanted]
