"""Multi-GPU training through torchrun DDP, end to end over the loopback sshd on a replayed 2-GPU instance:
`orch train --gpus 2` runs two real torchrun ranks (gloo on CPU) of the tiny recipe; their LoRA weights agree,
rank 0 alone writes the adapter, stop ends both ranks, a killed rank fails the run instead of hanging it, and
`--resume` continues it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import orch
from tests.fixtures.sshd import write_inventory
from tests.test_e2e_lifecycle import DATASET, weights_uri  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(900)

FEW = {"max_steps": 20, "logging_steps": 5, "eval_after_train": False}


class Box:
    def __init__(self, root: Path, sshd, env: dict):
        self.root, self.sshd, self.env = root, sshd, env

    def orch(self, *args: str, timeout: float = 600):
        return orch(*args, cwd=self.root, env=self.env, timeout=timeout)

    def run_dir(self, run_id: str) -> Path:
        return Path(self.sshd.remote_dirs("ddpbox")[0]) / "runs" / run_id

    def state(self, run_id: str) -> dict:
        r = self.orch("status", "--instance", "ddpbox", "--run", run_id, "--json")
        assert r.code == 0, r.stderr
        return r.json()["runs"][0]

    def wait(self, run_id: str, ok, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.state(run_id)
            if ok(state):
                return state
            time.sleep(0.5)
        raise AssertionError(f"run {run_id}: condition never met: {state}\n"
                             f"{(self.run_dir(run_id) / 'log').read_text()[-3000:]}")


def ranks_of(run_dir: Path) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_text()) for p in (run_dir / "ranks").glob("*.json")}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def box(tmp_path_factory, sshd, instance_venv, moto_server, weights_uri):  # noqa: F811
    sshd.set_gpu_case("a10g-x2")
    root = tmp_path_factory.mktemp("ddp")
    instance = sshd.instance("ddpbox", python_env=str(instance_venv), expect={"gpu_count": 2})
    base = {"instance": "ddpbox", "recipe": "tiny-verbosity", "dataset": str(DATASET), "weights": weights_uri,
            "s3_endpoint": moto_server.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward"}
    jobs = {"tiny": {**base, "overrides": FEW},
            "tiny-ckpt": {**base, "gpus": 2, "overrides": {**FEW, "max_steps": 40, "save_steps": 10}},
            "tiny-long": {**base, "gpus": "2", "overrides": {**FEW, "max_steps": 100000}},
            # the watchdog's bound cut to seconds, so a frozen rank is caught within the test
            "tiny-frozen": {**base, "gpus": 2, "overrides": {**FEW, "max_steps": 100000, "ddp_peer_timeout_s": 6}}}
    write_inventory(root, {"ddpbox": instance}, jobs, env={})
    yield Box(root, sshd, {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"})
    sshd.set_gpu_case("a10g-idle")


def test_two_gpus_run_two_torchrun_ranks_whose_lora_weights_agree_and_rank_0_alone_writes_the_adapter(box):
    t0 = time.monotonic()
    trained = box.orch("train", "tiny", "--gpus", "2", "--follow", "--json")
    seconds = time.monotonic() - t0
    assert trained.code == 0, trained.stderr[-4000:]
    doc = trained.json()
    assert doc["state"] == "finished" and doc["gpus"] == [0, 1]
    run_dir = box.run_dir(doc["run_id"])
    ranks = ranks_of(run_dir)
    assert sorted(ranks) == [0, 1] and {r["status"] for r in ranks.values()} == {"succeeded"}
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]   # DDP kept the replicas equal
    assert ranks[0]["step"] == ranks[1]["step"] == 20
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "per_device_batch": 8,
                                     "gradient_accumulation_steps": 1, "effective_batch": 16}
    supervised = json.loads((run_dir / "supervise.json").read_text())
    assert "--nproc-per-node" in supervised["cmd"] and supervised["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    log0, log1 = (run_dir / "log").read_text(), (run_dir / "ranks" / "1.log").read_text()
    assert "effective batch 16 = per-device 8 x accumulation 1 x 2 processes" in log0
    assert log0.count("== save_adapter") == 1 and "== save_adapter" not in log1   # rank 0 alone
    assert "rank 1 succeeded" in log1 and (run_dir / "adapter" / "manifest.json").is_file()
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if m["event"] == "step"] == [5, 10, 15, 20]   # one writer: no duplicates
    shown = box.orch("logs", "--run", doc["run_id"], "--instance", "ddpbox", "--rank", "1")
    assert shown.code == 0 and shown.stdout == log1
    bad = box.orch("logs", "--run", doc["run_id"], "--instance", "ddpbox", "--rank", "2")
    assert bad.code == 2 and "no rank 2" in bad.stderr
    evaluated = box.orch("eval", "tiny", "--json")   # the DDP adapter evaluates as a one-GPU one does
    assert evaluated.code in (0, 1), evaluated.stderr[-2000:]
    assert evaluated.json()["report"]["ratio"] > 0
    print(f"\n2-rank DDP run of 20 steps through orch train: {seconds:.1f} s")


def test_a_two_gpu_run_is_refused_by_preflight_on_a_box_with_one_gpu(box):
    box.sshd.set_gpu_case("a10g-idle")
    try:
        refused = box.orch("train", "tiny", "--gpus", "2")
    finally:
        box.sshd.set_gpu_case("a10g-x2")
    assert refused.code == 1 and "2 x A10G" in refused.stderr and "Traceback" not in refused.stderr


def test_stop_ends_every_rank_and_status_shows_each_ranks_heartbeat(box):
    started = box.orch("train", "tiny-long", "--json")
    assert started.code == 0, started.stderr[-3000:]
    run_id = started.json()["run_id"]
    try:
        running = box.wait(run_id, lambda s: len(s["ranks"]) == 2 and all((r["step"] or 0) > 0 for r in s["ranks"]))
        assert all(r["status"] == "running" and r["alive"] and r["heartbeat_age_s"] < 30 for r in running["ranks"])
        table = box.orch("status", "--instance", "ddpbox", "--run", run_id)
        shown = table.stdout + table.stderr
        assert f"{run_id} ranks: 0 running" in shown and "1 running, step" in shown
        pids = [r["pid"] for r in running["ranks"]]
    finally:
        stopped = box.orch("stop", "--run", run_id, "--instance", "ddpbox", "--grace", "20", "--json")
    assert stopped.code == 0, stopped.stderr
    assert stopped.json()["run"]["state"] == "stopped"
    assert not any(alive(pid) for pid in pids), "a rank outlived orch stop"


def test_a_killed_rank_fails_the_run_within_seconds_and_resume_continues_it(box):
    started = box.orch("train", "tiny-ckpt", "--json")
    assert started.code == 0, started.stderr[-3000:]
    run_id = started.json()["run_id"]
    run_dir = box.run_dir(run_id)
    box.wait(run_id, lambda s: 10 in s["checkpoints"] or s["state"] not in ("running", "starting"))
    rank1 = ranks_of(run_dir)[1]["pid"]
    killed_at = time.monotonic()
    os.kill(rank1, signal.SIGKILL)
    failed = box.wait(run_id, lambda s: s["state"] not in ("running", "starting"), timeout=120)
    took = time.monotonic() - killed_at
    assert failed["state"] == "failed", failed
    assert took < 60, f"the run took {took:.0f} s to fail after a rank died"
    assert not any(alive(r["pid"]) for r in ranks_of(run_dir).values())

    resumed = box.orch("train", "tiny-ckpt", "--resume", "--follow", "--json")
    assert resumed.code == 0, resumed.stderr[-4000:]
    assert resumed.json()["run_id"] == run_id and resumed.json()["state"] == "finished"
    record = json.loads((run_dir / "run.json").read_text())
    assert [a["status"] for a in record["attempts"]][-1] == "succeeded"
    assert int(record["attempts"][-1]["resumed_from"].split("-")[1]) >= 10
    ranks = ranks_of(run_dir)
    assert ranks[0]["step"] == ranks[1]["step"] == 40 and ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    print(f"\na killed rank failed the run in {took:.1f} s")


def test_a_frozen_rank_is_caught_by_the_peer_watchdog_and_fails_the_run_instead_of_hanging_it(box):
    """SIGSTOP leaves rank 1's process alive (so torchrun sees nothing wrong) and rank 0 blocked in gloo's
    all-reduce for ever: only rank 0's watchdog, seeing rank 1's heartbeat go stale past ddp_peer_timeout_s,
    can end it."""
    started = box.orch("train", "tiny-frozen", "--json")
    assert started.code == 0, started.stderr[-3000:]
    run_id = started.json()["run_id"]
    run_dir = box.run_dir(run_id)
    box.wait(run_id, lambda s: len(s["ranks"]) == 2 and all((r["step"] or 0) > 0 for r in s["ranks"]))
    ranks = ranks_of(run_dir)
    frozen_at = time.monotonic()
    os.kill(ranks[1]["pid"], signal.SIGSTOP)
    try:
        failed = box.wait(run_id, lambda s: s["state"] not in ("running", "starting"), timeout=180)
        took = time.monotonic() - frozen_at
    finally:
        if alive(ranks[1]["pid"]):
            os.kill(ranks[1]["pid"], signal.SIGKILL)
    assert failed["state"] == "failed", failed
    rank0 = ranks_of(run_dir)[0]
    assert rank0["status"] == "failed" and rank0["error"].startswith(f"rank 1 (pid {ranks[1]['pid']}) has not "
                                                                     f"beaten for ")
    assert "(ddp_peer_timeout_s=6)" in rank0["error"]
    assert "ending this rank so the run fails instead of hanging" in (run_dir / "log").read_text()
    assert 6 <= took < 120, f"the frozen rank took {took:.0f} s to fail the run"
    assert not any(alive(r["pid"]) for r in ranks_of(run_dir).values())
    print(f"\na frozen rank failed the run in {took:.1f} s (ddp_peer_timeout_s 6)")
