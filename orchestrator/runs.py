"""Runs on an instance: start one detached, follow it, ask its state, stop it.

All of it goes through `remote_payload/supervise.py` (stdlib). `start` runs the bundle's copy; the
questions (`status`, `tail`, `stop`) send its source with `python3 -c`, so they work on any instance,
deployed or not, in one round trip each.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import time
from dataclasses import dataclass

from .bundle import PAYLOAD_DIR
from .deploy import DeployResult, RemoteLayout
from .errors import CheckFailed, InputError, RemoteError
from .inventory import Instance, Job
from .transport.base import Transport

SUPERVISE = PAYLOAD_DIR / "supervise.py"
FINAL_STATES = ("finished", "failed", "stopped", "lost")


def new_run_id(job: str) -> str:
    return f"{job}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _supervise(transport: Transport, instance: Instance, *args: str, check: bool = True):
    return transport.run([instance.python, "-c", SUPERVISE.read_text(), *args], check=check)


def list_runs(transport: Transport, instance: Instance, *, job: str | None = None,
              run_id: str | None = None) -> list[dict]:
    args = ["status", "--runs-dir", RemoteLayout(instance.work_dir).runs]
    args += ["--job", job] if job else []
    args += ["--run", run_id] if run_id else []
    return json.loads(_supervise(transport, instance, *args).text)["runs"]


def find_run(transport: Transport, instance: Instance, *, job: str | None, run_id: str | None) -> dict:
    """The run a command means: `--run ID`, else the latest run (of the job, when one is named)."""
    runs = list_runs(transport, instance, job=job, run_id=run_id)
    if runs:
        return runs[-1]
    if run_id:
        raise InputError(f"{instance.name}: run {run_id} not found",
                         hint=f"`orch status --instance {instance.name}` lists its runs")
    what = f"no run of job {job}" if job else "no run"
    raise InputError(f"{instance.name}: {what} yet", hint=f"start one with `orch train {job or 'JOB'}`")


@dataclass
class Started:
    run_id: str
    run_dir: str
    pid: int
    resumed: bool


def start_training(transport: Transport, instance: Instance, job: Job, deployed: DeployResult, *,
                   resume: bool = False, extra_epochs: int | None = None) -> Started:
    layout = RemoteLayout(instance.work_dir)
    if resume:
        previous = find_run(transport, instance, job=job.name, run_id=None)
        if previous["state"] in ("running", "starting"):
            raise CheckFailed(f"{instance.name}: run {previous['run_id']} of {job.name} is still running",
                              hint=f"follow it with `orch logs --run {previous['run_id']} --follow`")
        if not previous["checkpoints"]:
            raise CheckFailed(f"{instance.name}: run {previous['run_id']} has no checkpoint to resume from",
                              hint=f"start afresh with `orch train {job.name}`")
        run_id, resumes = previous["run_id"], (previous["meta"].get("resumes") or 0) + 1
    else:
        run_id, resumes = new_run_id(job.name), 0
    run_dir = layout.run(run_id)
    payload = [deployed.python, "-m", "remote_payload.train", "--job",
               posixpath.join(deployed.bundle_dir, "job.json"), "--model-dir", deployed.model_dir,
               "--run-dir", run_dir]
    payload += ["--resume"] if resume else []
    payload += ["--extra-epochs", str(extra_epochs)] if extra_epochs else []
    meta = {"run_id": run_id, "job": job.name, "bundle": deployed.bundle_dir, "python": deployed.python,
            "model_dir": deployed.model_dir, "gpu": job.gpu, "cwd": deployed.bundle_dir, "resumes": resumes,
            "env": {"PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": str(job.gpu)}}
    supervise = posixpath.join(deployed.bundle_dir, "remote_payload", "supervise.py")
    result = transport.run([instance.python, supervise, "start", "--run-dir", run_dir,
                            "--lock", layout.lock(job.gpu), "--meta", json.dumps(meta), "--", *payload],
                           check=False)
    try:
        answer = json.loads(result.text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RemoteError(f"{instance.name}: starting the run failed: {result.err_text.strip()[-500:]}") from None
    if answer.get("busy"):
        holder = answer.get("holder") or {}
        raise CheckFailed(f"{instance.name}: GPU {job.gpu} is busy with run {holder.get('run_id', '?')} "
                          f"(job {holder.get('job', '?')}, pid {holder.get('pid', '?')})",
                          hint=f"wait for it (`orch logs --run {holder.get('run_id')} --follow`) or "
                               f"stop it (`orch stop --run {holder.get('run_id')}`)")
    if not answer.get("ok"):
        raise RemoteError(f"{instance.name}: starting the run failed: {answer.get('error')}")
    return Started(run_id, run_dir, answer["pid"], resume)


def stop_run(transport: Transport, instance: Instance, run: dict, grace: float) -> dict:
    result = _supervise(transport, instance, "stop", "--run-dir", run["run_dir"], "--grace", str(grace))
    return json.loads(result.text)


def follow(transport_factory, instance: Instance, run_dir: str, *, offset: int = 0, follow: bool = True,
           on_log=print, on_metric=lambda m: None, retries: int = 5) -> tuple[dict, int]:
    """Stream the run's log from byte `offset`; re-attach after a dropped connection, by offset, so no
    line is lost or repeated. Returns the final state and the offset reached."""
    attempt = 0
    while True:
        transport = transport_factory()
        proc = transport.open([instance.python, "-c", SUPERVISE.read_text(), "tail", "--run-dir", run_dir,
                               "--offset", str(offset)] + (["--follow"] if follow else []))
        proc.close_stdin()
        try:
            while True:
                line = proc.readline()
                if not line:
                    break
                event = json.loads(line)
                if "log" in event:
                    on_log(event["log"])
                    offset = event["offset"]
                elif "metric" in event:
                    on_metric(event["metric"])
                elif "end" in event:
                    return event["end"], event["offset"]
        except (OSError, EOFError, ValueError):
            pass
        finally:
            proc.kill()
        transport.close()  # dropped: the next attempt gets a fresh connection
        attempt += 1
        if attempt > retries:
            raise RemoteError(f"{instance.name}: lost the connection while following {run_dir}",
                              hint=f"the run goes on; re-attach with `orch logs --run "
                                   f"{posixpath.basename(run_dir)} --follow`")
        time.sleep(min(2 ** attempt, 10) * 0.5)
