"""The serving plumbing that needs no model: the vLLM command line built from an export (and every refusal that
keeps vLLM from crashing on a bad input), the systemd unit (checked by `systemd-analyze verify`), and the
restart supervisor (restart with backoff, the start limit, the restarts counter, stopping a process group)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest_serving import PAYLOAD_ENV, ROOT

pytestmark = [pytest.mark.timeout(300)]


def make_export(root: Path, kind: str, base: Path | None = None, name: str = "demo", **extra) -> Path:
    """An export directory as remote_payload.export writes it (export.json + the files vLLM reads)."""
    from remote_payload.export.record import write_export

    root.mkdir(parents=True)
    base_model = {"dir_name": "base", "config_sha256": None}
    if base is not None:
        import hashlib

        base_model["config_sha256"] = hashlib.sha256((base / "config.json").read_bytes()).hexdigest()
    (root / "adapter_config.json" if kind == "lora" else root / "config.json").write_text(
        json.dumps({"r": 16, "peft_type": "LORA"}))
    write_export(root, {"kind": kind, "served_name": name, "base_model": base_model, "dtype": "float32",
                        "lora": {"max_rank": 16} if kind == "lora" else None, "checks": {}, **extra})
    return root


def command_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", "-m", "remote_payload.serve.command", *args], cwd=ROOT,
                          env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=60)


@pytest.fixture
def base(tmp_path) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"architectures": ["Qwen3ForCausalLM"], "vocab_size": 1088}')
    return base


def test_a_raw_peft_adapter_is_refused_with_the_reason_and_never_reaches_vllm(serving_run):
    done = command_cli("--export", str(serving_run.adapter), "--base", str(serving_run.model_dir), "--json")
    assert done.returncode == 2 and done.stdout == ""
    assert "is a training adapter, not an export" in done.stderr
    assert "trainable_token_indices" in done.stderr and "python -m remote_payload.export" in done.stderr


def test_a_lora_export_becomes_base_plus_enable_lora_with_its_tokenizer_on_loopback(tmp_path, base):
    export = make_export(tmp_path / "lora", "lora", base)
    extra = make_export(tmp_path / "other", "lora", base, name="other")
    done = command_cli("--export", str(export), "--base", str(base), "--python", "/venv/bin/python", "--port",
                       "8123", "--device", "cpu", "--lora", f"other={extra}", "--json")
    assert done.returncode == 0, done.stderr
    command = json.loads(done.stdout)
    argv = command["argv"]
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    flag = {argv[i]: argv[i + 1] for i in range(3, len(argv) - 1) if argv[i].startswith("--")}
    assert flag["--model"] == str(base.resolve()) and flag["--tokenizer"] == str(export.resolve())
    assert flag["--host"] == "127.0.0.1" and flag["--port"] == "8123" and flag["--max-lora-rank"] == "16"
    assert "--enable-lora" in argv and "--enforce-eager" in argv and flag["--max-loras"] == "2"
    i = argv.index("--lora-modules")
    assert argv[i + 1:i + 3] == [f"demo={export.resolve()}", f"other={extra.resolve()}"]
    assert command["model_names"] == ["demo", "other"] and command["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_a_merged_export_is_served_as_the_model_under_its_name(tmp_path):
    export = make_export(tmp_path / "merged", "merged")
    command = json.loads(command_cli("--export", str(export), "--device", "cuda", "--json").stdout)
    argv = command["argv"]
    assert argv[argv.index("--model") + 1] == str(export.resolve())
    assert argv[argv.index("--served-model-name") + 1] == "demo" and "--enable-lora" not in argv
    assert "--enforce-eager" not in argv and "VLLM_CPU_KVCACHE_SPACE" not in command["env"]


@pytest.mark.parametrize("case, message", [
    ("no base", "pass --base BASE_DIR"),
    ("wrong base", "is not the base this export was made for"),
    ("failed check", "failed its lengths check"),
    ("not an export", "has no export.json"),
    ("lora on merged", "--lora applies to lora exports only"),
])
def test_exports_that_vllm_would_fail_on_are_refused_naming_the_problem(tmp_path, base, case, message):
    if case == "not an export":
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "config.json").write_text("{}")
        args = ["--export", str(tmp_path / "x")]
    elif case == "lora on merged":
        args = ["--export", str(make_export(tmp_path / "m", "merged")), "--lora", f"x={tmp_path}"]
    elif case == "failed check":
        args = ["--export", str(make_export(tmp_path / "f", "merged", checks={"lengths": {"ok": False}}))]
    else:
        export = make_export(tmp_path / "lora", "lora", base)
        other = tmp_path / "other"
        other.mkdir()
        (other / "config.json").write_text('{"vocab_size": 5}')
        args = ["--export", str(export)] + ({"no base": [], "wrong base": ["--base", str(other)]}[case])
    done = command_cli(*args)
    assert done.returncode == 2 and message in done.stderr


def test_a_w4a16_export_on_a_cpu_without_avx512_is_refused_and_allowed_with_it(tmp_path):
    from remote_payload.serve.command import ServeRefused, build_command

    export = make_export(tmp_path / "w4", "merged-w4a16")
    with pytest.raises(ServeRefused, match="only on CPUs with AVX-512.*cpu_gemm_wna16"):
        build_command(export, device="cpu", flags={"avx2", "fma"})
    assert "--model" in build_command(export, device="cpu", flags={"avx2", "avx512f"}).argv
    assert "--enforce-eager" not in build_command(export, device="cuda", flags=set()).argv


def test_the_systemd_unit_restarts_always_with_a_start_limit_and_passes_systemd_analyze_verify(tmp_path):
    from remote_payload.serve.supervisor import Policy
    from remote_payload.serve.systemd import render_unit

    unit = render_unit("orch-vllm-demo", "orch vLLM demo", ["/usr/bin/python3", "-m", "vllm.x", "--model",
                                                             "/models/my model", "--x", "50%"],
                       env={"VLLM_CPU_KVCACHE_SPACE": "1", "A": "b c"}, user="root", workdir=str(tmp_path),
                       log=str(tmp_path / "vllm.log"), policy=Policy(start_limit_burst=4, start_limit_interval=600))
    lines = unit.splitlines()
    for expected in ("Restart=always", "RestartSec=5", "StartLimitBurst=4", "StartLimitIntervalSec=600",
                     "KillMode=control-group", "WantedBy=multi-user.target", 'Environment="A=b c"'):
        assert expected in lines
    assert lines.index("StartLimitBurst=4") < lines.index("[Service]")   # systemd reads it in [Unit]
    assert 'ExecStart=/usr/bin/python3 -m vllm.x --model "/models/my model" --x 50%%' in lines
    path = tmp_path / "orch-vllm-demo.service"
    path.write_text(unit)
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: make system-deps installs the systemd package"
    verify = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "Unknown" not in verify.stderr, verify.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.replace("Restart=always", "Restart=sometimes").replace("KillMode=", "KillMood="))
    complaint = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse service restart" in complaint.stderr and "KillMood" in complaint.stderr  # it can fail


# --- the supervisor ---------------------------------------------------------------------------------------

def supervisor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "remote_payload.serve.supervisor", *args], cwd=ROOT,
                          env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=60)


def status_of(state: Path, name: str) -> dict:
    return json.loads(supervisor("status", "--state-dir", str(state), "--name", name).stdout)


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_crashing_command_is_restarted_with_backoff_until_the_start_limit_then_marked_failed(tmp_path):
    started = supervisor("start", "--state-dir", str(tmp_path), "--name", "crash", "--restart-sec", "0.2",
                         "--max-restart-sec", "0.8", "--start-limit-burst", "4", "--start-limit-interval", "60",
                         "--", "sh", "-c", "echo boom; exit 3")
    assert started.returncode == 0, started.stderr
    final = wait_for(lambda: (s := status_of(tmp_path, "crash"))["state"] == "failed" and s, 30, "failed state")
    assert final["restarts"] == 3 and (tmp_path / "crash" / "restarts").read_text().strip() == "3"
    assert "started 4 times within 60s" in final["reason"] and final["last_exit"]["code"] == 3
    assert not final["alive"]
    starts = final["starts"]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] < gaps[1] < gaps[2]          # 0.2, 0.4, 0.8 s of backoff between the exits
    assert (tmp_path / "crash" / "log").read_text().splitlines().count("boom") == 4


def test_stop_ends_the_whole_process_group_and_a_second_start_is_refused(tmp_path):
    script = f"cd {tmp_path}; sleep 300 & echo $! > child.pid; wait"
    started = supervisor("start", "--state-dir", str(tmp_path), "--name", "svc", "--stop-grace", "5", "--",
                         "sh", "-c", script)
    assert started.returncode == 0
    grandchild = int(wait_for(lambda: (tmp_path / "child.pid").is_file() and (tmp_path / "child.pid").read_text()
                              .strip(), 20, "the grandchild"))
    again = supervisor("start", "--state-dir", str(tmp_path), "--name", "svc", "--", "true")
    assert again.returncode == 2 and "already running" in again.stderr
    stopped = supervisor("stop", "--state-dir", str(tmp_path), "--name", "svc")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["state"] == "stopped"
    wait_for(lambda: not os.path.exists(f"/proc/{grandchild}") or
             open(f"/proc/{grandchild}/stat").read().split()[2] == "Z", 10, "the grandchild to end")
    assert supervisor("stop", "--state-dir", str(tmp_path), "--name", "svc").returncode == 2


def test_a_killed_command_is_started_again_and_the_restart_is_counted(tmp_path):
    supervisor("start", "--state-dir", str(tmp_path), "--name", "k", "--restart-sec", "0.1", "--", "sleep", "300")
    first = wait_for(lambda: (s := status_of(tmp_path, "k")).get("child_pid") and s, 20, "the first start")
    os.kill(first["child_pid"], signal.SIGKILL)
    second = wait_for(lambda: (s := status_of(tmp_path, "k")).get("child_pid") not in (None, first["child_pid"])
                      and s, 20, "the restart")
    assert second["state"] == "running" and second["restarts"] == 1
    assert second["last_exit"]["signal"] == signal.SIGKILL
    supervisor("stop", "--state-dir", str(tmp_path), "--name", "k")
