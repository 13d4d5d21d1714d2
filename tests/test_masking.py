"""Secrets never reach the terminal: one output path masks everything orch prints -- messages, tables, JSON,
`-v` tracebacks and the remote log it streams -- whatever a secret's length or its variable's name."""

from __future__ import annotations

import json
import sys

from tests.test_inventory_errors import ENV, INVENTORY

TOKEN = "tok-Zq81-secret"


def test_a_verbose_traceback_does_not_show_a_secret_that_sits_in_a_path(project):
    # the key path uses a secret variable; the key file is missing -> an error whose message holds the path
    project.write("inventory.yaml", INVENTORY.replace("  key: ${SSH_KEY_PATH}", "  key: /keys/${DEPLOY_TOKEN}/id"))
    project.write(".env", ENV + f"DEPLOY_TOKEN={TOKEN}\n")
    run = project.orch("-v", "preflight", "qwen")
    assert run.code == 2
    assert "Traceback" in run.stderr          # -v shows it ...
    assert TOKEN not in run.stderr + run.stdout   # ... masked


def test_a_secret_shorter_than_eight_characters_is_masked_as_a_whole_word(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ${API_TOKEN}"))
    project.write(".env", ENV + "API_TOKEN=k3y9\n")
    run = project.orch("show", "qwen", "--json")
    assert run.code == 0, run.stderr
    assert "k3y9" not in run.stdout + run.stderr
    assert json.loads(run.stdout)["instance"]["user"] == "****"


def test_the_remote_log_is_masked_when_orch_streams_it(project, tmp_path):
    """A run whose log prints a secret (say, a library echoing its config): `orch logs` masks it."""
    work = tmp_path / "work"
    run_dir = work / "runs" / "demo-20260101-000000-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": run_dir.name, "job": "demo", "started_at": 1.0}))
    (run_dir / "pid").write_text("999999")
    (run_dir / "exit_code").write_text(json.dumps({"exit_code": 0, "stopped": False}))
    (run_dir / "log").write_text(f"loading...\nconfig: password={TOKEN}\ndone\n")
    project.write("inventory.yaml", INVENTORY.replace("    work_dir: work", f"    work_dir: {work}")
                  .replace("    models_dir: models", f"    models_dir: {tmp_path / 'models'}\n"
                                                     f"    python: {sys.executable}"))
    project.write(".env", ENV + f"DB_PASSWORD={TOKEN}\n")
    project.write("data.jsonl", '{"prompt": "q", "completion": "a", "style": "TERSE"}\n')
    run = project.orch("logs", "--instance", "local", "--run", run_dir.name)
    assert run.code == 0, run.stderr
    assert "config: password=****" in run.stdout and TOKEN not in run.stdout + run.stderr
