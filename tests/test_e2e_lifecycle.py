"""The product end to end, through the CLI, over the real loopback sshd and a real S3 server:
preflight -> deploy -> train the tiny recipe in 4-bit -> status -> fetch-adapter -> eval >= 3x,
and the faults the user's documents lived through (a dropped controller, a killed training, a busy GPU).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, OrchRun, kill_run, orch
from tests.fixtures.sshd import write_inventory

pytestmark = pytest.mark.timeout(900)

DATASET = ROOT / "training_data" / "verbosity_demo.jsonl"


@pytest.fixture(scope="module")
def weights_uri(moto_server, tiny_model_dir):
    """The tiny Qwen3 on the S3 server, config.json gzipped with Content-Encoding, tokenizer_config.json without."""
    client = moto_server.client()
    bucket, prefix = "orch-e2e", "models/tiny-qwen3/"
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in Path(tiny_model_dir).rglob("*") if p.is_file()):
        body, extra = path.read_bytes(), {}
        if path.name == "config.json":
            body, extra = gzip.compress(body), {"ContentEncoding": "gzip"}
        elif path.name == "tokenizer_config.json":
            body = gzip.compress(body)
        client.put_object(Bucket=bucket, Key=prefix + path.relative_to(tiny_model_dir).as_posix(), Body=body, **extra)
    return f"s3://{bucket}/{prefix}"


class Lifecycle:
    def __init__(self, root: Path, sshd, env: dict):
        self.root, self.sshd, self.env = root, sshd, env

    def orch(self, *args: str, timeout: float = 600) -> OrchRun:
        return orch(*args, cwd=self.root, env=self.env, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=self.root,
                                env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run_dir(self, run_id: str) -> Path:
        work = self.sshd.remote_dirs("gpubox")[0]
        return Path(work) / "runs" / run_id

    def state(self, run_id: str) -> dict:
        r = self.orch("status", "--instance", "gpubox", "--run", run_id, "--json")
        assert r.code == 0, r.stderr
        return r.json()["runs"][0]

    def wait_state(self, run_id: str, states: tuple[str, ...], timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.state(run_id)
            if state["state"] in states:
                return state
            time.sleep(1)
        raise AssertionError(f"run {run_id} never reached {states}: {state}")


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory, sshd, instance_venv, moto_server, weights_uri):
    sshd.set_gpu_case("a10g-idle")
    root = tmp_path_factory.mktemp("project")
    instance = sshd.instance("gpubox", python_env=str(instance_venv))
    base = {"instance": "gpubox", "recipe": "tiny-verbosity", "dataset": str(DATASET), "weights": weights_uri,
            "s3_endpoint": moto_server.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward"}
    jobs = {
        "tiny": base,
        # checkpoints every 20 steps, so a kill always leaves one to resume from
        "tiny-ckpt": {**base, "overrides": {"save_steps": 20, "max_steps": 160, "eval_after_train": False}},
        # long enough to still be running while the busy-GPU and stop tests poke at it
        "tiny-long": {**base, "overrides": {"max_steps": 100000, "eval_after_train": False}},
    }
    write_inventory(root, {"gpubox": instance}, jobs, env={})
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}
    return Lifecycle(root, sshd, env)


def test_preflight_deploy_train_fetch_and_eval_work_end_to_end_over_ssh(lifecycle, tiny_model_dir, tmp_path):
    r = lifecycle.orch("preflight", "tiny", "--json")
    assert r.code == 0, r.stdout + r.stderr
    first = lifecycle.orch("deploy", "tiny", "--json")
    assert first.code == 0, first.stderr
    assert first.json()["payload_bytes_sent"] > 0
    again = lifecycle.orch("deploy", "tiny", "--json")
    assert again.code == 0 and again.json()["payload_bytes_sent"] == 0  # unchanged: nothing sent

    trained = lifecycle.orch("train", "tiny", "--follow", "--json")
    assert trained.code == 0, trained.stderr[-3000:]
    doc = trained.json()
    assert doc["state"] == "finished" and doc["exit_code"] == 0
    run_id = doc["run_id"]
    assert "[orch] run finished with exit code 0" in trained.stderr  # --json: the log went to stderr

    status = lifecycle.orch("status", "--instance", "gpubox", "--json")
    assert [r["state"] for r in status.json()["runs"] if r["run_id"] == run_id] == ["finished"]
    missing = lifecycle.orch("status", "--instance", "gpubox", "--run", "tiny-20000101-000000-0000")
    assert missing.code == 2 and "not found" in missing.stderr

    dest = tmp_path / "adapters"
    fetched = lifecycle.orch("fetch-adapter", "tiny", "--dest", str(dest), "--json")
    assert fetched.code == 0, fetched.stderr
    adapter = dest / "tiny" / run_id / "adapter"
    assert (adapter / "manifest.json").is_file() and (dest / "tiny" / run_id / "run.json").is_file()

    evaluated = lifecycle.orch("eval", "tiny", "--json")
    assert evaluated.code == 0, evaluated.stderr[-2000:]
    report = evaluated.json()["report"]
    assert report["ratio"] >= 3.0 and report["passed"]
    strict = lifecycle.orch("eval", "tiny", "--gate", "1000", "--json")  # a gate no adapter can pass
    assert strict.code == 1 and strict.json()["ok"] is False and strict.json()["report"]["gate"] == 1000

    # the fetched adapter loads on a fresh base and generates
    from remote_payload.modeling import load_for_inference
    from remote_payload.prompting import encode_prompt

    model, tokenizer, recipe, _ = load_for_inference(tiny_model_dir, adapter)
    ids = encode_prompt(tokenizer, [{"role": "user", "content": "What is 2+2?"}], "VERBOSE",
                        recipe.chat_template_kwargs)
    import torch

    out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)
    assert out.shape[1] > len(ids)


def test_killing_the_controller_while_following_leaves_the_run_going_and_logs_show_each_line_once(lifecycle):
    follower = lifecycle.popen("train", "tiny-ckpt", "--follow")
    run_id = follower.stdout.readline().strip()
    assert run_id.startswith("tiny-ckpt-"), follower.stderr.read()
    assert next_line(follower)      # it is following: the run's log is reaching the controller
    follower.kill()  # the controller dies: the run must not
    follower.wait()
    final = lifecycle.wait_state(run_id, ("finished", "failed", "lost"))
    assert final["state"] == "finished"
    logs = lifecycle.orch("logs", "--run", run_id)  # the run id alone names its job, so its instance
    assert logs.code == 0, logs.stderr
    on_disk = (lifecycle.run_dir(run_id) / "log").read_text()
    assert logs.stdout == on_disk  # every line, once, in order
    assert "[orch] run finished with exit code 0" in logs.stdout


def next_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The next line `proc` prints on stdout, waited for (never longer than `timeout`)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got and got[0], f"no output within {timeout:g} s"
    return got[0]


def test_a_killed_training_is_lost_and_resume_continues_from_its_checkpoint(lifecycle):
    started = lifecycle.orch("train", "tiny-ckpt", "--json")
    assert started.code == 0, started.stderr
    run_id = started.json()["run_id"]
    run_dir = lifecycle.run_dir(run_id)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "checkpoint-40").is_dir() and time.time() < deadline:
        time.sleep(0.5)
    assert (run_dir / "checkpoints" / "checkpoint-40").is_dir(), (run_dir / "log").read_text()[-2000:]
    kill_run(run_dir)
    lost = lifecycle.wait_state(run_id, ("lost", "failed", "finished"), timeout=30)
    assert lost["state"] == "lost" and lost["exit_code"] is None

    resumed = lifecycle.orch("train", "tiny-ckpt", "--resume", "--follow", "--json")
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.json()["run_id"] == run_id and resumed.json()["state"] == "finished"
    record = json.loads((run_dir / "run.json").read_text())
    last = record["attempts"][-1]["resumed_from"]
    assert last is not None and int(last.split("-")[1]) >= 40
    # the killed attempt is closed as lost, not left "running"; the second one succeeded
    assert [(a["attempt"], a["status"]) for a in record["attempts"]] == [(1, "lost"), (2, "succeeded")]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    markers = [m for m in metrics if m["event"] == "attempt"]
    resumed_at = int(last.split("-")[1])
    assert [(m["attempt"], m["start_step"]) for m in markers] == [(1, 0), (2, resumed_at)]
    steps = [(m["attempt"], m["step"]) for m in metrics if m["event"] == "step"]
    assert steps[-1] == (2, 160)
    # steps the killed attempt logged past its checkpoint appear again, but under attempt 2, after its marker
    second = metrics.index(markers[1])
    assert all(m["attempt"] == 2 for m in metrics[second:] if m["event"] == "step")
    assert all(m["attempt"] == 1 for m in metrics[:second] if m["event"] == "step")
    assert f"resuming from {last}" in (run_dir / "log").read_text()


def test_a_second_training_on_a_busy_gpu_is_refused_and_stop_releases_the_lock(lifecycle):
    first = lifecycle.orch("train", "tiny-long", "--json")
    assert first.code == 0, first.stderr
    run_id = first.json()["run_id"]
    lifecycle.wait_state(run_id, ("running",), timeout=60)
    second = lifecycle.orch("train", "tiny", "--force")
    assert second.code == 1
    assert run_id in second.stderr and "busy" in second.stderr
    assert "Traceback" not in second.stderr

    follower = lifecycle.popen("logs", "--run", run_id, "--instance", "gpubox", "--follow")
    assert next_line(follower)      # following: the log's first line arrived
    follower.send_signal(signal.SIGINT)  # Ctrl-C stops following, never the run
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == 130 and f"run {run_id} goes on" in err
    assert lifecycle.state(run_id)["state"] == "running"

    stopped = lifecycle.orch("stop", "--run", run_id, "--instance", "gpubox", "--grace", "10", "--json")
    assert stopped.code == 0, stopped.stderr
    assert stopped.json()["run"]["state"] == "stopped"
    third = lifecycle.orch("train", "tiny-long", "--json")  # the lock is free again
    assert third.code == 0, third.stderr
    lifecycle.orch("stop", "--run", third.json()["run_id"], "--instance", "gpubox", "--grace", "5")
