"""The detached-run supervisor: lock per GPU, running/finished/failed/lost, stop, re-attach by offset.

These drive `remote_payload/supervise.py` through the local transport with a small job script; the
end-to-end tests run the real training through SSH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from orchestrator.bundle import PAYLOAD_DIR
from orchestrator.deploy import DeployResult
from orchestrator.errors import CheckFailed
from orchestrator.inventory import Instance, Job
from orchestrator.layout import Layout
from orchestrator.runs import follow, list_runs, start_training, stop_run
from orchestrator.transport.local import LocalTransport

JOB_SCRIPT = r'''
import json, os, sys, time
run_dir = sys.argv[sys.argv.index("--run-dir") + 1]
steps = int(os.environ.get("STEPS", "6"))
with open(os.path.join(run_dir, "metrics.jsonl"), "a") as m:
    for step in range(1, steps + 1):
        print(f"step {step} line", flush=True)
        m.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n"); m.flush()
        time.sleep(float(os.environ.get("STEP_SECONDS", "0.2")))
sys.exit(int(os.environ.get("EXIT", "0")))
'''


@pytest.fixture
def setup(tmp_path):
    work = tmp_path / "work"
    bundle = work / "payload" / "fake"          # the real payload, its train module swapped for a small job
    shutil.copytree(PAYLOAD_DIR, bundle / "remote_payload", ignore=shutil.ignore_patterns("__pycache__"))
    (bundle / "remote_payload" / "train.py").write_text(JOB_SCRIPT)
    job_dir = work / "jobs" / "j1"
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text("{}")
    instance = Instance(name="box", transport="local", work_dir=str(work), models_dir=str(tmp_path / "m"),
                        python=sys.executable)
    job = Job(name="demo", instance="box", recipe="tiny-verbosity", dataset="d.jsonl", weights="s3://bucket/p/")
    deployed = DeployResult("box", "demo", "fake", str(bundle), str(job_dir), sys.executable, str(tmp_path / "m"))
    transport = LocalTransport("box")
    yield instance, job, deployed, transport
    for run in list_runs(transport, instance):
        if run["state"] == "running":
            stop_run(transport, instance, run, grace=1)


def wait_for(predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def state_of(transport, instance, run_id):
    return list_runs(transport, instance, run_id=run_id)[0]


def test_a_started_run_is_detached_and_finishes_with_its_exit_code(setup, monkeypatch):
    instance, job, deployed, transport = setup
    started = start_training(transport, instance, job, deployed)
    assert started.run_id.startswith("demo-")
    assert state_of(transport, instance, started.run_id)["state"] in ("running", "starting")
    final = wait_for(lambda: (r := state_of(transport, instance, started.run_id))["state"] == "finished" and r)
    assert final["exit_code"] == 0
    assert final["last_metrics"]["step"] == 6
    run_dir = Path(started.run_dir)
    for name in ("log", "pid", "heartbeat", "exit_code", "supervise.json", "metrics.jsonl"):
        assert (run_dir / name).exists(), name


def test_a_failing_job_is_reported_failed_with_its_code(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("EXIT", "3")
    started = start_training(transport, instance, job, deployed)
    final = wait_for(lambda: (r := state_of(transport, instance, started.run_id))["state"] != "running"
                     and r["state"] != "starting" and r)
    assert final["state"] == "failed" and final["exit_code"] == 3


def test_a_second_run_on_a_busy_gpu_is_refused_naming_the_holder(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("STEPS", "50")
    first = start_training(transport, instance, job, deployed)
    with pytest.raises(CheckFailed) as refused:
        start_training(transport, instance, job, deployed)
    assert first.run_id in refused.value.message and "busy" in refused.value.message


def test_stop_ends_the_run_and_releases_the_lock(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("STEPS", "500")
    first = start_training(transport, instance, job, deployed)
    result = stop_run(transport, instance, state_of(transport, instance, first.run_id), grace=5)
    assert result["run"]["state"] == "stopped"
    monkeypatch.setenv("STEPS", "1")
    second = start_training(transport, instance, job, deployed)  # the lock is free again
    wait_for(lambda: state_of(transport, instance, second.run_id)["state"] == "finished")


def test_a_run_whose_processes_died_without_an_exit_code_is_lost_not_running(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("STEPS", "500")
    started = start_training(transport, instance, job, deployed)
    run_dir = Path(started.run_dir)
    child = int(wait_for(lambda: (run_dir / "child_pid").exists() and (run_dir / "child_pid").read_text()))
    os.killpg(child, signal.SIGKILL)  # the job and the supervisor die at once, as in a crash
    os.kill(started.pid, signal.SIGKILL)
    final = wait_for(lambda: (r := state_of(transport, instance, started.run_id))["state"] == "lost" and r)
    assert final["exit_code"] is None
    monkeypatch.setenv("STEPS", "1")
    again = start_training(transport, instance, job, deployed)  # the kernel dropped the dead run's lock
    wait_for(lambda: state_of(transport, instance, again.run_id)["state"] == "finished")


def test_following_from_an_offset_shows_every_line_exactly_once(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("STEPS", "8")
    started = start_training(transport, instance, job, deployed)
    first_part: list[str] = []
    # attach, read a little, "lose the connection", re-attach from the offset reached
    offset = 0
    deadline = time.time() + 20
    while "step 3 line" not in "".join(first_part) and time.time() < deadline:
        _, offset = follow(lambda: transport, instance, started.run_dir, offset=offset, follow=False,
                           on_log=first_part.append)
        time.sleep(0.1)
    rest: list[str] = []
    final, _ = follow(lambda: transport, instance, started.run_dir, offset=offset, follow=True,
                      on_log=rest.append)
    assert final["state"] == "finished"
    lines = [line for line in "".join(first_part + rest).splitlines() if line.endswith(" line")]
    assert lines == [f"step {i} line" for i in range(1, 9)]


def test_status_lists_runs_of_one_job_in_start_order(setup, monkeypatch):
    instance, job, deployed, transport = setup
    monkeypatch.setenv("STEPS", "1")
    a = start_training(transport, instance, job, deployed)
    wait_for(lambda: state_of(transport, instance, a.run_id)["state"] == "finished")
    b = start_training(transport, instance, job, deployed)
    wait_for(lambda: state_of(transport, instance, b.run_id)["state"] == "finished")
    runs = list_runs(transport, instance, job="demo")
    assert [r["run_id"] for r in runs] == [a.run_id, b.run_id]
    assert list_runs(transport, instance, job="other") == []
    assert json.loads((Path(Layout(instance.work_dir).run(a.run_id)) / "supervise.json").read_text())["job"] == "demo"
