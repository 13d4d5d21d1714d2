"""`python3 -m remote_payload.venvs` builds a tool venv once per requirements hash: `.complete` last (a half-built
venv is rebuilt), one installer at a time (a second one waits and reuses the first's venv), and a built venv
is reused in well under a second. The fake kind below installs only `pip` so these run in seconds; the real
serving/quantizing venvs are the session fixtures every serving test uses."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from remote_payload import venvs
from tests.conftest_serving import VENV_ROOT

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture
def fake_kind(tmp_path, monkeypatch):
    (tmp_path / "req.txt").write_text("# a locked file with one requirement the fresh venv already has\npip\n")
    monkeypatch.setattr(venvs, "HERE", tmp_path)
    monkeypatch.setitem(venvs.KINDS, "fake", {"cpu": ("req.txt", True)})
    monkeypatch.setitem(venvs.IMPORT_CHECK, "fake", "import json")
    return tmp_path


def test_a_venv_is_built_once_reused_rebuilt_when_half_built_and_never_marked_complete_on_failure(
        fake_kind, tmp_path):
    root = tmp_path / "venvs"
    first = venvs.install("fake", root, device="cpu", log=sys.stdout)
    again = venvs.install("fake", root, device="cpu", log=sys.stdout)
    assert first["created"] and not again["created"] and first["venv"] == again["venv"]
    assert again["seconds"] < 1.0
    target = venvs.venv_dir(root.resolve(), "fake", "cpu")
    facts = json.loads((target / ".complete").read_text())
    assert facts["requirements"] == "req.txt" and facts["bytes"] > 0
    # an installer killed half-way leaves no .complete: the next one starts over
    (target / ".complete").unlink()
    (target / "leftover").write_text("killed installer")
    rebuilt = venvs.install("fake", root, device="cpu", log=sys.stdout)
    assert rebuilt["created"] and not (target / "leftover").exists() and (target / ".complete").is_file()
    # a changed file is another venv; when pip fails it says why and nothing is marked complete
    (fake_kind / "req.txt").write_text("this-package-does-not-exist-orch==0.0.0\n")
    with pytest.raises(venvs.InstallFailed, match="installing req.txt"):
        venvs.install("fake", root, device="cpu", log=sys.stdout)
    failed = venvs.venv_dir(root.resolve(), "fake", "cpu")
    assert failed != target and not (failed / ".complete").exists()


def test_a_second_installer_waits_for_the_first_and_reuses_its_venv(fake_kind, tmp_path):
    root, results, errors = tmp_path / "venvs", [], []

    def install():
        try:
            results.append(venvs.install("fake", root, device="cpu", log=sys.stdout))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors and len(results) == 2
    assert sorted(r["created"] for r in results) == [False, True]
    assert results[0]["venv"] == results[1]["venv"]


def test_the_built_serving_venv_is_reused_instantly_and_reports_its_size(serve_venv):
    started = time.monotonic()
    done = subprocess.run(["python3", "-m", "remote_payload.venvs", "install", "serve", "--root", str(VENV_ROOT),
                           "--device", "cpu", "--json"], capture_output=True, text=True, timeout=60,
                          cwd=VENV_ROOT.parents[2])
    result = json.loads(done.stdout)
    print(f"\nserving venv: {result['bytes'] / 2**30:.2f} GiB, built in {result['build_seconds']}s")
    assert done.returncode == 0 and not result["created"] and time.monotonic() - started < 10
    assert result["python"] == str(serve_venv)
    path = subprocess.run(["python3", "-m", "remote_payload.venvs", "path", "serve", "--root", str(VENV_ROOT),
                           "--device", "cpu"], capture_output=True, text=True, cwd=VENV_ROOT.parents[2])
    assert path.returncode == 0 and path.stdout.strip() == str(serve_venv)
