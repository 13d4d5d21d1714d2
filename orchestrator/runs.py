"""Runs on an instance: start one detached, follow it, ask its state, stop it.

All of it goes through `remote_payload/supervise.py` (stdlib), run from the deployed payload folder (see
remote.py); what state a run is in is decided there, by `remote_payload/runstate.py`. Commands about one run
use the payload folder that started it, so the code reading a run is the code that wrote it.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import time
from dataclasses import dataclass

from .deploy import DeployResult
from .errors import CheckFailed, InputError, OrchError, RemoteError
from .inventory import Instance, Job
from .remote import Remote
from .transport.base import Transport

FOLLOW_RETRIES = 8           # reconnects in a row without progress before following gives up


def new_run_id(job: str) -> str:
    return f"{job}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def _payload_of(run: dict) -> str | None:
    return (run.get("meta") or {}).get("payload")


def list_runs(transport: Transport, instance: Instance, *, job: str | None = None,
              run_id: str | None = None) -> list[dict]:
    remote = Remote(transport, instance)
    args = ["status", "--runs-dir", remote.layout.runs]
    args += ["--job", job] if job else []
    args += ["--run", run_id] if run_id else []
    return remote.json("supervise", *args, what="listing the runs")["runs"]


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
    gpus: list[int] | None = None


def start_training(transport: Transport, instance: Instance, job: Job, deployed: DeployResult, *,
                   resume: bool = False, extra_epochs: int | None = None, plan_file: str | None = None,
                   parent=None, gpus: list[int] | None = None, meta_extra: dict | None = None,
                   resume_run: str | None = None) -> Started:
    """`plan_file`: the run's plan on the instance (run_plan.ship), recorded by the run beside what it measures.
    `parent` (stages.Parent): a stage-2 run continues from that adapter; a resumed run keeps the parent its
    first attempt had. `gpus`: the run's GPUs (default: the job's one `gpu`); more than one runs torchrun DDP,
    one process each. `meta_extra`: more facts for supervise.json (a sweep's name and point). `resume_run`: the
    run --resume continues (default: the job's latest on the instance)."""
    remote = Remote(transport, instance)
    gpus = sorted(gpus) if gpus else [job.gpu]
    if resume:
        previous = find_run(transport, instance, job=None if resume_run else job.name, run_id=resume_run)
        if previous["state"] in ("running", "starting"):
            raise CheckFailed(f"{instance.name}: run {previous['run_id']} of {job.name} is still running",
                              hint=f"follow it with `orch logs --run {previous['run_id']} --follow`")
        if previous["state"] == "unknown":
            raise CheckFailed(f"{instance.name}: the state of run {previous['run_id']} is unknown: "
                              f"{previous.get('reason')}", hint="look at that run's folder on the instance first")
        if not previous["checkpoints"]:
            raise CheckFailed(f"{instance.name}: run {previous['run_id']} has no checkpoint to resume from",
                              hint=f"start afresh with `orch train {job.name}`")
        run_id, resumes = previous["run_id"], (previous["meta"].get("resumes") or 0) + 1
        parent_doc = previous["meta"].get("parent")
    else:
        parent_doc = parent.to_json() if parent is not None else None
        run_id, resumes = new_run_id(job.name), 0
    run_dir = remote.layout.run(run_id)
    payload = [deployed.python, "-m", "remote_payload.train", "--job",
               posixpath.join(deployed.job_dir, "job.json"), "--model-dir", deployed.model_dir,
               "--run-dir", run_dir]
    payload += ["--resume"] if resume else []
    payload += ["--extra-epochs", str(extra_epochs)] if extra_epochs else []
    payload += ["--plan", plan_file] if plan_file else []
    if parent_doc:
        payload += ["--init-adapter", parent_doc["adapter_dir"], "--parent",
                    json.dumps({k: parent_doc.get(k) for k in ("run_id", "job", "source")})]
    meta = {"parent": parent_doc, "run_id": run_id, "job": job.name, "payload": deployed.bundle_dir,
            "job_dir": deployed.job_dir,
            "python": deployed.python, "model_dir": deployed.model_dir, "gpu": gpus[0], "gpus": gpus,
            "cwd": deployed.bundle_dir, "resumes": resumes, **(meta_extra or {}),
            "env": {"PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}}
    locks = [arg for gpu in gpus for arg in ("--lock", remote.layout.gpu_lock(gpu))]
    answer = remote.json("supervise", "start", "--run-dir", run_dir, *locks, "--nproc", str(len(gpus)),
                         "--meta", json.dumps(meta), "--", *payload, what="starting the run",
                         payload_dir=deployed.bundle_dir)
    if answer.get("busy"):
        holder = answer.get("holder") or {}
        busy_gpu = posixpath.basename(answer.get("lock") or "").removeprefix("gpu").removesuffix(".lock") or gpus[0]
        raise CheckFailed(f"{instance.name}: GPU {busy_gpu} is busy with run {holder.get('run_id', '?')} "
                          f"(job {holder.get('job', '?')}, pid {holder.get('pid', '?')})",
                          hint=f"wait for it (`orch logs --run {holder.get('run_id')} --follow`) or "
                               f"stop it (`orch stop --run {holder.get('run_id')}`)")
    if not answer.get("ok"):
        raise RemoteError(f"{instance.name}: starting the run failed: {answer.get('error')}")
    return Started(run_id, run_dir, answer["pid"], resume, gpus)


def stop_run(transport: Transport, instance: Instance, run: dict, grace: float) -> dict:
    answer = Remote(transport, instance).json("supervise", "stop", "--run-dir", run["run_dir"], "--grace", str(grace),
                                              what="stopping the run", payload_dir=_payload_of(run))
    if not answer.get("ok"):
        raise CheckFailed(f"{instance.name}: {answer.get('error')}",
                          hint=f"look at {run['run_dir']} on the instance: repair or remove the damaged file")
    return answer


def follow(transport_factory, instance: Instance, run_dir: str, *, offset: int = 0, follow: bool = True,
           on_log=print, on_metric=lambda m: None, payload_dir: str | None = None,
           retries: int = FOLLOW_RETRIES, sleep=time.sleep, rank: int = 0) -> tuple[dict, int]:
    """Stream the run's log from byte `offset`; re-attach after a dropped connection, by offset, so no
    line is lost or repeated. A failed reconnect is retried too; the count restarts whenever a connection
    carried the stream forward. Returns the final state and the offset reached."""
    failures = 0
    last_error: OrchError | Exception | None = None
    while True:
        transport = None
        progressed = False
        try:
            transport = transport_factory()
            proc = Remote(transport, instance).open("supervise", "tail", "--run-dir", run_dir, "--offset",
                                                    str(offset), *(["--follow"] if follow else []),
                                                    *(["--rank", str(rank)] if rank else []),
                                                    payload_dir=payload_dir)
            proc.close_stdin()
            try:
                while True:
                    line = proc.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    if "log" in event:
                        on_log(event["log"])
                        offset, progressed = event["offset"], True
                    elif "metric" in event:
                        on_metric(event["metric"])
                    elif "alive" in event:
                        progressed = True
                    elif "end" in event:
                        return event["end"], event["offset"]
            finally:
                proc.kill()
        except (OrchError, OSError, EOFError, ValueError) as exc:
            last_error = exc
        finally:
            if transport is not None:
                transport.close()   # dropped: the next attempt gets a fresh connection
        failures = 0 if progressed else failures + 1
        if failures > retries:
            why = f" ({last_error})" if last_error else ""
            raise RemoteError(f"{instance.name}: lost the connection while following {run_dir}{why}",
                              hint=f"the run goes on; re-attach with `orch logs --run "
                                   f"{posixpath.basename(run_dir)} --follow`")
        sleep(min(2 ** failures, 10) * 0.5)
