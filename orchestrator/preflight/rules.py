"""Preflight's rules: what the probe found, compared with the inventory's `expect:` and the job's needs.

Pure functions of data (no connection, no network): `evaluate(instance, probe, job, weights_bytes,
model_config)` returns a list of `Check`s. A failed check names the instance, what was found, what was
expected and the setting (inventory field or .env variable) to fix: the user's documents lost days to a
generic `GPU_INSTANCE_IP` pointing at the wrong box, so "is it the right instance?" is asked whenever the
evidence says it may not be.

Units: GB are 10^9 bytes (as GPU and disk sizes are marketed: an A10G's 23028 MiB is 24.1 GB); nvidia-smi
reports MiB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError

GB = 1_000_000_000
MIB = 1024 * 1024
MIN_PYTHON = (3, 10)
CHECKPOINT_HEADROOM = 10 * GB     # beside the weights: checkpoints (adapter + optimizer state), the adapter, logs


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- where settings came from

def _right_instance(instance) -> str:
    """'host 203.0.113.10 comes from QWEN_GPU_INSTANCE_IP in .env; is it the right instance?'"""
    if instance.transport == "local":
        return "this is the local instance; is the inventory's expectation right?"
    return f"host {instance.host} comes from {instance.origin('host')}; is it the right instance?"


def _gb(n: float | None) -> str:
    return "?" if n is None else f"{n / GB:.1f} GB"


def human_bytes(n: float | None) -> str:
    from ..output import human_bytes as fmt

    return fmt(n)


def _num(x: float) -> str:
    """22 -> '22', 0.5 -> '0.5', 1e6 -> '1000000' (never exponent notation in a message)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.3f}".rstrip("0")


def _mib_gb(mib: int | None) -> str:
    return "?" if mib is None else f"{mib} MiB ({mib * MIB / GB:.1f} GB)"


def weights_dir(instance, job) -> str | None:
    """Where the job's weights land on the instance (weights.local_weights_path): models_dir/<prefix's last part>."""
    if job is None:
        return None
    from ..weights import local_weights_path

    try:
        return local_weights_path(instance, job)
    except InputError:
        return None


# ---------------------------------------------------------------------- the checks

def evaluate(instance, probe: dict, job=None, weights_bytes: int | None = None, model_config=None) -> list[Check]:
    """Compare what the probe found with what the inventory and the job need. `model_config`: the job's
    config.json (or why it could not be read), for the memory plan of a GPU recipe."""
    checks: list[Check] = []
    add = checks.append
    e = instance.expect
    name = instance.name

    # identity: hostname, EC2 instance id and type
    ec2 = probe.get("ec2") or {}
    hostname = probe.get("hostname") or "?"
    seen = f"hostname {hostname}"
    if ec2.get("instance_id"):
        seen += f", EC2 {ec2['instance_id']} ({ec2.get('instance_type') or '?'})"
    problems, fixes = [], []
    for label, want, got, key in (("instance id", e.instance_id, ec2.get("instance_id"), "instance_id"),
                                  ("instance type", e.instance_type, ec2.get("instance_type"), "instance_type")):
        if not want:
            continue
        if got is None:
            problems.append(f"cannot read the EC2 {label} to compare with {want} "
                            f"({ec2.get('error') or 'no answer from IMDS'})")
            fixes.append(f"check that IMDSv2 answers on the instance (imds_url {instance.imds_url or 'off'}), "
                         f"or drop {instance.origin(f'expect.{key}')}")
        elif got != want:
            problems.append(f"{label} is {got}, expected {want}")
            fixes.append(f"the expected {label} comes from {instance.origin(f'expect.{key}')}")
    if e.hostname and hostname.split(".")[0].lower() != e.hostname.split(".")[0].lower():
        problems.append(f"hostname is {hostname}, expected {e.hostname}")
        fixes.append(f"the expected hostname comes from {instance.origin('expect.hostname')}")
    if problems:
        add(Check("identity", False, f"{name}: " + "; ".join(problems),
                  f"{_right_instance(instance)} ({'; '.join(fixes)})"))
    else:
        pinned = [k for k in ("instance_id", "instance_type", "hostname") if getattr(e, k)]
        add(Check("identity", True, seen + ("" if pinned else " (not pinned: set expect.instance_id to "
                                                                 "catch a wrong box)")))

    # python3 for the payload venv
    version = (probe.get("python") or {}).get("version") or "?"
    try:
        parsed = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        parsed = (0, 0)
    need = ".".join(map(str, MIN_PYTHON))
    if parsed >= MIN_PYTHON:
        add(Check("python3", True, f"{instance.python} is Python {version}"))
    else:
        add(Check("python3", False, f"{name}: {instance.python} is Python {version}; the training venv needs >= {need}",
                  f"install python{need} (or newer) on the instance, or set instances.{name}.python"))

    checks += _gpu_checks(instance, probe, job)
    checks += _disk_checks(instance, probe, job, weights_bytes)
    if job is not None:   # the planner's peak against the GPU's free memory (orchestrator/memory_check.py)
        from ..memory_check import memory_check

        planned = memory_check(instance, probe, job, model_config)
        if planned is not None:
            add(Check("GPU memory plan", *planned))

    # another orch run already holding the box
    runs = probe.get("runs") or {}
    active = runs.get("active") or []
    if runs.get("error"):
        add(Check("active runs", False, f"{name}: cannot list {runs.get('runs_dir')}: {runs['error']}",
                  f"check the permissions of {instance.work_dir} (from {instance.origin('work_dir')})"))
    elif active:
        running = [r for r in active if r.get("state") != "unknown"]
        unknown = [r for r in active if r.get("state") == "unknown"]
        parts = []
        if running:
            parts.append("an orch run is still active: " + ", ".join(
                f"{r['run_id']} (job {r.get('job') or '?'}, pid {r['pid']}"
                + (f", heartbeat {r['heartbeat_age_s']:.0f} s ago)" if r.get("heartbeat_age_s") is not None
                   else ")") for r in running))
        if unknown:
            parts.append("possibly active, state unknown: " + ", ".join(
                f"{r['run_id']} ({r.get('reason')})" for r in unknown))
        fix = f"wait for it (`orch status --instance {name}`) or stop it (`orch stop --instance {name}`)"
        if unknown:
            fix += (f"; a run in an unknown state has a damaged file in its folder under {instance.work_dir}/runs: "
                    "look at it, then repair or remove that run's folder")
        add(Check("active runs", False, f"{name}: " + "; ".join(parts), fix))
    else:
        add(Check("active runs", True, "no orch run active"))
    return checks


def _matches(expected: str, gpu_name: str) -> bool:
    """'A10G' matches 'NVIDIA A10G'; 'L4' does not match 'NVIDIA L40S'; 'H100' matches 'NVIDIA H100 80GB HBM3'."""
    import re

    def tokens(text: str) -> list[str]:
        return [t for t in re.split(r"[\s\-_/]+", text.lower()) if t and t != "nvidia"]

    want, have = tokens(expected), tokens(gpu_name)
    return bool(want) and any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def _gpu_checks(instance, probe: dict, job) -> list[Check]:
    e = instance.expect
    name = instance.name
    smi = probe.get("nvidia_smi") or {}
    gpus = probe.get("gpus") or []
    procs = probe.get("gpu_processes") or []
    checks: list[Check] = []
    if not e.gpu:
        found = ", ".join(g.get("name", "?") for g in gpus) or "none"
        return [Check("GPU", True, f"no GPU required (found: {found})")]
    status = smi.get("status")
    if status == "missing":
        checks.append(Check("nvidia-smi", False, f"{name}: nvidia-smi is not installed (no NVIDIA driver), "
                                                 f"expected a {e.gpu}",
                            f"{_right_instance(instance)} A GPU instance has the NVIDIA driver installed"))
        return checks
    if status != "ok":
        checks.append(Check("nvidia-smi", False, f"{name}: nvidia-smi fails: {smi.get('error')}",
                            "the NVIDIA driver is not working: reboot the instance, or reinstall the driver "
                            "that matches its kernel"))
        return checks
    checks.append(Check("nvidia-smi", True, f"driver {smi.get('driver_version') or '?'}, "
                                            f"CUDA {smi.get('cuda_version') or '?'}"))
    names = ", ".join(f"{g.get('name')}" for g in gpus) or "none"
    matching = [g for g in gpus if _matches(e.gpu, g.get("name") or "")]
    count = max(1, e.gpu_count, (getattr(job, "gpu_count", 1) or 1) if job is not None else 1)
    if len(matching) < count:
        found = f"GPU is {names}" if len(gpus) == 1 else f"GPUs are {names}" if gpus else "no GPU found"
        want = e.gpu if count <= 1 else f"{count} x {e.gpu}"
        checks.append(Check("GPU model", False, f"{name}: {found}, expected {want}",
                            f"{_right_instance(instance)} (the expected model comes from "
                            f"{instance.origin('expect.gpu')})"))
        return checks
    checks.append(Check("GPU model", True, ", ".join(f"GPU {g.get('index')}: {g.get('name')}" for g in matching)))

    want_mib = e.min_vram_gb * GB / MIB
    big = [g for g in matching if (g.get("memory_total_mib") or 0) >= want_mib]
    detail = ", ".join(f"GPU {g.get('index')}: {_mib_gb(g.get('memory_total_mib'))}" for g in matching)
    if len(big) < max(1, e.gpu_count):
        checks.append(Check("GPU memory", False, f"{name}: {detail}; need >= {_num(e.min_vram_gb)} GB",
                            f"{_right_instance(instance)} (the minimum comes from "
                            f"{instance.origin('expect.min_vram_gb')})"))
        return checks
    checks.append(Check("GPU memory", True, f"{detail} >= {_num(e.min_vram_gb)} GB"))

    # busy: another process holds memory on the GPU the job will use (a DDP job: on enough of them -- `gpus: N`
    # needs N idle GPUs, whatever the box has: the run takes idle ones; `gpus: all` needs every GPU idle)
    multi = job is not None and getattr(job, "gpus", "1") != "1"
    target = job.gpu if job is not None and not multi else None
    need = (len(big) if job.gpu_count is None else job.gpu_count) if multi else max(1, e.gpu_count)
    candidates = [g for g in big if target is None or g.get("index") == target] or big
    busy_reasons = {}
    for g in candidates:
        holders = [p for p in procs if (p.get("gpu_uuid") == g.get("uuid") or p.get("gpu_index") == g.get("index"))
                   and (p.get("used_mib") or 0) > e.max_gpu_used_mib]
        used = g.get("memory_used_mib") or 0
        if holders:
            busy_reasons[g.get("index")] = "; ".join(
                f"pid {p['pid']} ({p.get('name') or '?'}) holds {p.get('used_mib')} MiB" for p in holders)
        elif used > e.max_gpu_used_mib:
            busy_reasons[g.get("index")] = f"{used} MiB in use by processes not visible here"
    idle = [g for g in candidates if g.get("index") not in busy_reasons]
    if target is not None and target not in [g.get("index") for g in idle]:
        reason = busy_reasons.get(target, f"GPU {target} is not among the matching GPUs")
        checks.append(Check("GPU idle", False, f"{name}: GPU {target} is busy: {reason}",
                            "another training would run out of GPU memory: stop that process (or wait for it), "
                            f"then run preflight again; more than {e.max_gpu_used_mib} MiB in use counts as busy "
                            f"({instance.origin('expect.max_gpu_used_mib')})"))
    elif target is None and len(idle) < need:
        reason = "; ".join(f"GPU {i}: {r}" for i, r in busy_reasons.items()) or f"{len(idle)} of {need} GPUs idle"
        checks.append(Check("GPU idle", False, f"{name}: GPU busy: {reason}",
                            "another training would run out of GPU memory: stop that process (or wait for it), "
                            f"then run preflight again; more than {e.max_gpu_used_mib} MiB in use counts as busy "
                            f"({instance.origin('expect.max_gpu_used_mib')})"))
    else:
        shown = idle if target is None else [g for g in idle if g.get("index") == target]
        checks.append(Check("GPU idle", True, ", ".join(
            f"GPU {g.get('index')}: {g.get('memory_used_mib')} MiB in use" for g in shown)))
    return checks


def _disk_checks(instance, probe: dict, job, weights_bytes: int | None) -> list[Check]:
    e = instance.expect
    name = instance.name
    disks = probe.get("disk") or {}
    checks: list[Check] = []

    def measured(label: str) -> tuple[dict, str]:
        d = disks.get(label) or {}
        where = d.get("path") or label
        if d.get("measured_at") and d.get("measured_at") != d.get("path"):
            where += f" (not created yet; measured at {d['measured_at']})"
        return d, where

    # models dir: the weights, plus headroom
    need = e.min_free_disk_gb * GB
    why = f"expect.min_free_disk_gb {_num(e.min_free_disk_gb)}"
    sizes = probe.get("sizes") or {}
    present = (sizes.get("weights") or {}).get("bytes") or 0
    if weights_bytes:
        missing = max(0, int(weights_bytes) - present)
        weights_need = missing + CHECKPOINT_HEADROOM
        if weights_need > need:
            need = weights_need
            why = (f"the job's weights need {human_bytes(missing)} more"
                   + (f" ({human_bytes(present)} of {human_bytes(weights_bytes)} already there)" if present else "")
                   + f" + {_gb(CHECKPOINT_HEADROOM)} for checkpoints")
    d, where = measured("models_dir")
    user = (probe.get("host") or {}).get("user") or "the login user"
    if d.get("error") or d.get("free_bytes") is None:
        checks.append(Check("disk: models dir", False, f"{name}: cannot measure {where}: {d.get('error')}",
                            f"models_dir comes from {instance.origin('models_dir')}"))
    elif d.get("writable") is False:
        checks.append(Check("disk: models dir", False, f"{name}: {user} cannot write to {where}",
                            f"give {user} write access there (e.g. `sudo chown -R {user} {d.get('measured_at')}`), "
                            f"or point models_dir at a folder it owns ({instance.origin('models_dir')})"))
    elif d["free_bytes"] < need:
        checks.append(Check("disk: models dir", False,
                            f"{name}: {_gb(d['free_bytes'])} free of {_gb(d['total_bytes'])} in {where}; "
                            f"need {_gb(need)} ({why})",
                            f"free space on the instance or grow its volume; {_right_instance(instance)} "
                            f"(models_dir from {instance.origin('models_dir')}, the minimum from "
                            f"{instance.origin('expect.min_free_disk_gb')})"))
    else:
        checks.append(Check("disk: models dir", True, f"{_gb(d['free_bytes'])} free of {_gb(d['total_bytes'])} "
                                                      f"in {where}; need {_gb(need)} ({why})"))

    d, where = measured("work_dir")
    user = (probe.get("host") or {}).get("user") or "the login user"
    if d.get("error") or d.get("free_bytes") is None:
        checks.append(Check("disk: work dir", False, f"{name}: cannot measure {where}: {d.get('error')}",
                            f"work_dir comes from {instance.origin('work_dir')}"))
    elif d.get("writable") is False:
        checks.append(Check("disk: work dir", False, f"{name}: {user} cannot write to {where}",
                            f"give {user} write access there (e.g. `sudo chown -R {user} {d.get('measured_at')}`), "
                            f"or point work_dir at a folder it owns ({instance.origin('work_dir')})"))
    else:
        checks.append(Check("disk: work dir", True, f"{_gb(d['free_bytes'])} free of {_gb(d['total_bytes'])} in {where}"))

    d, where = measured("tmp")
    need_tmp = e.min_free_tmp_gb * GB
    if d.get("error") or d.get("free_bytes") is None:
        checks.append(Check("disk: /tmp", False, f"{name}: cannot measure /tmp: {d.get('error')}", None))
    elif d["free_bytes"] < need_tmp:
        checks.append(Check("disk: /tmp", False, f"{name}: only {_gb(d['free_bytes'])} free in /tmp; "
                                                 f"need {_gb(need_tmp)}",
                            f"clean /tmp on the instance (old downloads?); the minimum comes from "
                            f"{instance.origin('expect.min_free_tmp_gb')}"))
    else:
        checks.append(Check("disk: /tmp", True, f"{_gb(d['free_bytes'])} free; need {_gb(need_tmp)}"))
    return checks



def job_inputs_check(job) -> Check:
    """The job's recipe, overrides and dataset, checked here before anything reaches the instance."""
    from ..bundle import check_job_inputs

    try:
        check_job_inputs(job)
    except InputError as exc:
        return Check("job inputs", False, exc.message, exc.hint)
    return Check("job inputs", True, f"recipe {job.recipe} and dataset {Path(job.dataset).name} are valid")
