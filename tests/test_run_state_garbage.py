"""One garbage file in one run folder must not break every run command: that run is `unknown`, with the
reason, the others are listed and handled as usual, and preflight counts the unknown run as possibly active."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import orch

pytestmark = pytest.mark.timeout(600)

GOOD = "demo-20260101-000000-aaaa"
GARBAGE = {  # run id -> (file, content, what the reason must mention)
    "demo-20260102-000000-bbbb": ("pid", "abc", "pid"),
    "demo-20260103-000000-cccc": ("heartbeat", "xyz", "heartbeat"),
    "demo-20260104-000000-dddd": ("exit_code", "[1]", "exit_code"),
}


def _supervise_json(run_dir: Path, started: float, **meta) -> None:
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": run_dir.name, "job": "demo",
                                                        "started_at": started, **meta}))


@pytest.fixture
def instance(tmp_path, trained_run, tiny_model_dir):
    """A local instance holding one good finished run (a real trained adapter) and three damaged ones."""
    work = tmp_path / "work"
    runs = work / "runs"
    good = runs / GOOD
    shutil.copytree(trained_run.run_dir, good)
    _supervise_json(good, 1.0, bundle=str(trained_run.bundle), python=sys.executable,
                    model_dir=str(tiny_model_dir), gpu=0)
    (good / "pid").write_text("999999")
    (good / "exit_code").write_text(json.dumps({"exit_code": 0, "stopped": False}))
    (good / "log").write_text("step 1\nrun succeeded\n")
    for n, (run_id, (name, content, _)) in enumerate(GARBAGE.items(), start=2):
        run_dir = runs / run_id
        run_dir.mkdir(parents=True)
        _supervise_json(run_dir, float(n), bundle=str(trained_run.bundle), python=sys.executable,
                        model_dir=str(tiny_model_dir), gpu=0)
        (run_dir / "pid").write_text("999998")
        (run_dir / "log").write_text("starting\n")
        (run_dir / name).write_text(content)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""\
instances:
  local:
    transport: local
    work_dir: {work}
    models_dir: {tmp_path / 'models'}
    python: {sys.executable}
    python_env: {sys.prefix}
    imds_url: ""
    expect: {{gpu: null, min_free_disk_gb: 0.001, min_free_tmp_gb: 0.001}}
jobs:
  demo:
    instance: local
    recipe: tiny-verbosity
    dataset: {Path(__file__).resolve().parent.parent / 'training_data' / 'verbosity_demo.jsonl'}
    weights: s3://orch-garbage/tiny/
""")
    return tmp_path


def test_status_lists_every_run_and_reports_a_damaged_one_as_unknown_with_the_reason(instance):
    run = orch("status", "--instance", "local", "--json", cwd=instance)
    assert run.code == 0, run.stderr
    runs = {r["run_id"]: r for r in run.json()["runs"]}
    assert runs[GOOD]["state"] == "finished"
    for run_id, (name, content, mention) in GARBAGE.items():
        assert runs[run_id]["state"] == "unknown", runs[run_id]
        assert mention in runs[run_id]["reason"] and repr(content) in runs[run_id]["reason"]
    table = orch("status", "--instance", "local", cwd=instance)
    assert table.code == 0 and "unknown" in table.stderr and "Traceback" not in table.stderr


def test_logs_stop_eval_and_fetch_of_the_good_run_work_beside_damaged_ones(instance):
    logs = orch("logs", "--instance", "local", "--run", GOOD, cwd=instance)
    assert logs.code == 0 and logs.stdout == "step 1\nrun succeeded\n", logs.stderr
    stop = orch("stop", "--instance", "local", "--run", GOOD, "--json", cwd=instance)
    assert stop.code == 0 and stop.json()["already"] == "finished", stop.stderr
    fetched = orch("fetch-adapter", "--instance", "local", "--run", GOOD, "--dest", str(instance / "dest"),
                   "--json", cwd=instance)
    assert fetched.code == 0, fetched.stderr
    evaluated = orch("eval", "--instance", "local", "--run", GOOD, "--json", cwd=instance)
    assert evaluated.code == 0, evaluated.stderr[-2000:]
    assert evaluated.json()["report"]["passed"]


def test_commands_on_a_damaged_run_say_its_state_is_unknown_instead_of_crashing(instance):
    run_id = next(iter(GARBAGE))
    stop = orch("stop", "--instance", "local", "--run", run_id, cwd=instance)
    assert stop.code == 1 and "unknown" in stop.stderr and "Traceback" not in stop.stderr
    fetched = orch("fetch-adapter", "--instance", "local", "--run", run_id, "--dest", str(instance / "d"),
                   cwd=instance)
    assert fetched.code == 1 and "Traceback" not in fetched.stderr


def test_preflight_counts_a_run_in_an_unknown_state_as_possibly_active(instance):
    run = orch("preflight", "--instance", "local", "--json", cwd=instance)
    assert run.code == 1, run.stdout
    active = {c["name"]: c for c in run.json()["instances"][0]["checks"]}["active runs"]
    assert not active["ok"]
    for run_id in GARBAGE:
        assert run_id in active["detail"]
    assert "possibly active" in active["detail"]
    assert GOOD not in active["detail"]
