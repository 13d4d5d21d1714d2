"""Sweeps across a fleet, end to end: two real sshd instances (a replayed g5.12xlarge whose GPU 2 a foreign
process holds, and a one-GPU g5.4xlarge), tiny runs of a few steps, `orch sweep start|status` through the CLI.
Two controllers start the same sweep at once; an instance killed mid-sweep has its run requeued elsewhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import orch
from tests.fixtures.sshd import SshServer, write_inventory
from tests.test_e2e_lifecycle import DATASET, weights_uri  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(1200)


class Fleet:
    def __init__(self, root: Path, servers: dict[str, SshServer], env: dict):
        self.root, self.servers, self.env = root, servers, env

    def orch(self, *args: str, cwd: Path | None = None, timeout: float = 900):
        return orch(*args, cwd=cwd or self.root, env=self.env, timeout=timeout)

    def popen(self, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=self.root,
                                env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=stderr,
                                text=True)

    def spec(self, name: str, grid: dict, **fields) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "job": "tiny", "grid": grid, "metric": "train_loss",
                                        "goal": "min", "instances": ["big", "small"], **fields}))
        return path

    def work(self, name: str) -> Path:
        return Path(self.servers[name].remote_dirs(name)[0])

    def runs(self, sweep: str) -> list[dict]:
        """Every run of `sweep` on every instance, from the run folders themselves."""
        out = []
        for name in self.servers:
            for folder in sorted((self.work(name) / "runs").glob("*")):
                if not (folder / "supervise.json").is_file():
                    continue    # a run being started: its supervisor writes supervise.json (atomically) next
                info = json.loads((folder / "supervise.json").read_text())
                if info.get("sweep") != sweep:
                    continue
                done = folder / "exit_code"
                out.append({"instance": name, "dir": folder, "run_id": info["run_id"], "point": info["point"],
                            "gpus": info["gpus"], "start": info["started_at"],
                            "end": json.loads(done.read_text())["finished_at"] if done.exists() else None,
                            "exit": json.loads(done.read_text())["exit_code"] if done.exists() else None})
        return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, sshd, instance_venv, moto_server, weights_uri):  # noqa: F811
    servers = {"big": SshServer(gpu_case="a10g-x4-gpu2-busy").start(), "small": SshServer(gpu_case="a10g-idle").start()}
    try:
        root = tmp_path_factory.mktemp("fleet")
        instances = {"big": servers["big"].instance("big", python_env=str(instance_venv), expect={"gpu_count": 4}),
                     "small": servers["small"].instance("small", python_env=str(instance_venv))}
        job = {"instance": "big", "recipe": "tiny-verbosity", "dataset": str(DATASET), "weights": weights_uri,
               "s3_endpoint": moto_server.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward",
               "overrides": {"max_steps": 8, "logging_steps": 4, "save_steps": 4, "eval_after_train": False}}
        write_inventory(root, instances, {"tiny": job, "tiny-2": {**job, "gpus": 2}, "tiny-all": {**job, "gpus": "all"}},
                        env={})
        yield Fleet(root, servers, {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"})
    finally:
        for server in servers.values():
            server.close()


def overlapping(intervals: list[tuple[float, float]]) -> bool:
    ordered = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(ordered, ordered[1:]))


def test_two_controllers_run_a_six_point_sweep_once_each_one_run_per_gpu_never_the_busy_gpu(fleet, tmp_path):
    spec = fleet.spec("six", {"seed": [1, 2, 3], "learning_rate": [0.001, 0.003]})
    t0 = time.monotonic()
    first, second = fleet.popen("sweep", "start", str(spec), "--poll", "1", "--json"), \
        fleet.popen("sweep", "start", str(spec), "--poll", "1", "--json")
    outs = [p.communicate(timeout=900) for p in (first, second)]
    wall = time.monotonic() - t0
    print("\n--- controller 1:\n" + outs[0][1][-2500:] + "\n--- controller 2:\n" + outs[1][1][-2500:])
    assert first.returncode == 0, outs[0][1][-4000:]
    assert second.returncode == 0, outs[1][1][-4000:]
    runs = fleet.runs("six")
    assert sorted(r["point"] for r in runs) == sorted({r["point"] for r in runs}) and len(runs) == 6  # once each
    assert all(r["exit"] == 0 for r in runs)
    by_gpu: dict[tuple[str, int], list] = {}
    for r in runs:
        for gpu in r["gpus"]:
            by_gpu.setdefault((r["instance"], gpu), []).append((r["start"], r["end"]))
    assert not any(overlapping(v) for v in by_gpu.values()), by_gpu        # at most one run per GPU at a time
    assert ("big", 2) not in by_gpu                                         # the foreign process's GPU
    everything = [(r["start"], r["end"]) for r in runs]
    assert overlapping(everything)                                          # runs did go side by side

    # another laptop: the same inventory and spec, no controller state, rebuilds the table from the instances
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "inventory.yaml").write_text((fleet.root / "inventory.yaml").read_text())
    (laptop / "six.yaml").write_text(spec.read_text())
    status = fleet.orch("sweep", "status", "six.yaml", "--json", cwd=laptop)
    assert status.code == 0, status.stderr
    rows = status.json()["rows"]
    assert [r["state"] for r in rows] == ["finished"] * 6
    best = [r for r in rows if r["best"]]
    assert len(best) == 1 and best[0]["metric"] == min(r["metric"] for r in rows)
    table = fleet.orch("sweep", "status", "six.yaml", cwd=laptop)
    shown = table.stdout + table.stderr
    assert "* learning_rate=" in shown and "instance:gpu" in shown and "big:" in shown
    print(f"\nsix-point sweep, two controllers, 4 slots: {wall:.1f} s")


def _kill_box(fleet: Fleet, name: str) -> None:
    """The box dies: its sshd goes away and its runs with it (supervisor and training at once)."""
    fleet.servers[name].stop()
    for folder in (fleet.work(name) / "runs").glob("*"):
        for pid_file, group in (("child_pid", True), ("pid", False)):
            try:
                pid = int((folder / pid_file).read_text())
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass


def test_an_instance_killed_mid_sweep_has_its_run_requeued_and_finished_elsewhere(fleet):
    spec = fleet.spec("five", {"seed": [11, 12, 13, 14, 15]}, lost_after_s=5)
    log = fleet.root / "five.log"
    controller = fleet.popen("sweep", "start", str(spec), "--poll", "1", "--json", "--timeout", "400",
                             stderr=open(log, "w"))
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not [r for r in fleet.runs("five") if r["instance"] == "small"]:
            time.sleep(0.5)
        on_small = [r for r in fleet.runs("five") if r["instance"] == "small"]
        assert on_small, "no run was placed on the one-GPU box"
        _kill_box(fleet, "small")
        out, _ = controller.communicate(timeout=600)
    finally:
        if controller.poll() is None:
            controller.kill()
        fleet.servers["small"]._launch()        # back up for whoever comes next
    err = log.read_text()
    assert controller.returncode == 0, err[-4000:]
    rows = json.loads(out)["rows"]
    assert [r["state"] for r in rows] == ["finished"] * 5
    moved = [r for r in rows if r["point"] == on_small[0]["point"]][0]
    assert moved["instance"] == "big" and moved["attempts"] >= 1
    assert "lost on small (instance unreachable): requeued" in err


def test_preflight_of_a_two_gpu_job_passes_with_one_gpu_foreign_busy_and_an_all_gpu_job_is_refused_naming_it(
        fleet):
    two = fleet.orch("preflight", "tiny-2", "--json")
    checks = {c["name"]: c for c in json.loads(two.stdout)["instances"][0]["checks"]}
    assert two.code == 0 and checks["GPU idle"]["ok"], two.stdout[-3000:]
    every = fleet.orch("preflight", "tiny-all", "--json")
    checks = {c["name"]: c for c in json.loads(every.stdout)["instances"][0]["checks"]}
    assert every.code == 1 and not checks["GPU idle"]["ok"]
    assert "GPU 2: pid 41873" in checks["GPU idle"]["detail"]


def test_a_two_gpu_sweep_runs_each_point_as_ddp_on_two_free_gpus_of_one_box_never_the_busy_or_the_small_one(
        fleet):
    """big's usable GPUs are 0, 1 and 3 (2 is foreign-busy): one 2-GPU slot, [0, 1]; the 1-GPU box has none, and
    a run never spans boxes. So the points run one after another, each as two torchrun ranks on big:0,1."""
    spec = fleet.spec("pairs", {"seed": [21, 22]}, gpus=2)
    run = fleet.orch("sweep", "start", str(spec), "--poll", "1", "--json", "--timeout", "600")
    assert run.code == 0, run.stderr[-4000:]
    assert [r["state"] for r in run.json()["rows"]] == ["finished"] * 2
    runs = fleet.runs("pairs")
    assert len(runs) == 2 and all(r["instance"] == "big" and r["gpus"] == [0, 1] and r["exit"] == 0 for r in runs)
    assert not overlapping([(r["start"], r["end"]) for r in runs])
    for r in runs:
        ranks = {int(p.stem): json.loads(p.read_text()) for p in (r["dir"] / "ranks").glob("*.json")}
        assert sorted(ranks) == [0, 1] and {k["status"] for k in ranks.values()} == {"succeeded"}
        assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
        assert json.loads((r["dir"] / "run.json").read_text())["distributed"]["world_size"] == 2
    assert [r["gpus"] for r in run.json()["rows"]] == [[0, 1], [0, 1]]


def test_sweep_stop_stops_its_runs_and_every_controller_stops_placing(fleet):
    spec = fleet.spec("halt", {"max_steps": [100000], "seed": [1, 2, 3, 4, 5, 6]})
    controller = fleet.popen("sweep", "start", str(spec), "--poll", "1", "--json")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and len([r for r in fleet.runs("halt") if r["end"] is None]) < 4:
            time.sleep(0.5)
        assert len(fleet.runs("halt")) == 4       # 4 free slots (GPU 2 is foreign-busy); the rest wait
        stopped = fleet.orch("sweep", "stop", str(spec), "--grace", "10", "--json")
        assert stopped.code == 0, stopped.stderr
        assert len(stopped.json()["stopped"]) == 4
        out, _ = controller.communicate(timeout=120)
    finally:
        if controller.poll() is None:
            controller.kill()
    assert controller.returncode == 1                       # it ended without every point finished
    rows = json.loads(out)["rows"]
    assert sorted(r["state"] for r in rows) == ["pending"] * 2 + ["stopped"] * 4
    assert len(fleet.runs("halt")) == 4 and all(r["end"] is not None for r in fleet.runs("halt"))
