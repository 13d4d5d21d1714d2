#!/usr/bin/env python3
"""Transfer bench: `orch fetch-adapter` throughput next to OpenSSH `scp -r` and `rsync`, the fetch's own tar
reader next to `tarfile`'s stream mode, and a no-change `orch deploy`.

It starts its own OpenSSH sshd on 127.0.0.1 (tests/fixtures/sshd.py), writes a ~500 MB adapter-like run
folder on the "instance" side (a few big random files, a tokenizer, small JSON, a manifest), then, in the
same run and rotating the order, fetches it N times with
  * `fetch_adapter` (connect + 2 round trips + sha256 of every file + rename; the command minus CLI start-up),
  * `scp -r` of the same files from the same sshd, and `rsync -a` over the same ssh options (when installed),
and prints the median MB/s of each and the ratios (target >= 1.0). Then the stream alone: one connection,
the same remote `tar -cf -` as the fetch, unpacked by `orchestrator.fetch.receive.unpack` (the custom reader)
or by `tarfile.open(mode="r|").extractall(filter="data")` (the library), N rounds each, medians and ratio:
the hand-written reader stays only while it is faster. Last it deploys the demo job twice over the same sshd
and prints the second (no-change) deploy's payload bytes sent (target 0) and time.

    .venv/bin/python bench/transfer.py [--size-mb 500] [--reps 5] [--json]

Everything it creates lives in temporary folders removed at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.fetch import fetch_adapter
from orchestrator.inventory import Instance, Job
from orchestrator.transport import connect
from tests.fixtures.sshd import SshdUnavailable, SshServer

SCP_TIMEOUT = 600


def make_adapter(run_dir: Path, size_mb: int) -> int:
    """A finished run folder shaped like a real one; returns the bytes a fetch moves."""
    from remote_payload.manifest import write_manifest

    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True)
    big = size_mb * 1_000_000 - 11_400_000
    sizes = {"adapter_model.safetensors": big // 2, "adapter_model-00002-of-00002.safetensors": big // 3,
             "style_rows.safetensors": big - big // 2 - big // 3, "tokenizer.json": 11_400_000,
             "adapter_config.json": 900, "tokenizer_config.json": 9_700, "special_tokens_map.json": 600,
             "payload_meta.json": 1_500, "chat_template.jinja": 4_100}
    for name, size in sizes.items():
        with open(adapter / name, "wb") as f:
            left = size
            while left:
                n = min(left, 8 << 20)
                f.write(os.urandom(n))
                left -= n
    write_manifest(adapter)
    (run_dir / "run.json").write_text(json.dumps({"status": "succeeded", "job": {"job": "bench"}}) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n"
                                                   for i in range(2000)))
    (run_dir / "exit_code").write_text(json.dumps({"exit_code": 0}) + "\n")
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": run_dir.name, "job": "bench", "started_at": 1.0}))
    (run_dir / "pid").write_text("999999999\n")
    for folder, _dirs, names in os.walk(run_dir):
        os.chmod(folder, 0o755)
        for n in names:
            os.chmod(os.path.join(folder, n), 0o644)
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()
               and p.name not in ("exit_code", "supervise.json", "pid"))


def instance_for(server: SshServer, name: str) -> Instance:
    work, models = server.remote_dirs(name)
    return Instance(name=name, transport="ssh", host=server.host, port=server.port, user=server.user,
                    key=str(server.client_key), known_hosts=str(server.known_hosts), work_dir=work,
                    models_dir=models, imds_url=None, connect_timeout=10)


def time_orch(instance: Instance, run_dir: Path, dest: Path) -> float:
    started = time.perf_counter()
    transport = connect(instance)
    try:
        result = fetch_adapter(transport, instance, str(run_dir), dest, job="bench", run_id=run_dir.name,
                               progress=False)
    finally:
        transport.close()
    elapsed = time.perf_counter() - started
    assert result.status == "fetched", result.status
    return elapsed


def time_scp(server: SshServer, run_dir: Path, dest: Path) -> float:
    dest.mkdir(parents=True)
    ssh = server.ssh_argv()[1:-1]            # the same options bare ssh uses (key, port, known_hosts)
    options = [("-P" if a == "-p" else a) for a in ssh]
    remote = f"{server.user}@{server.host}"
    sources = [f"{remote}:{run_dir}/{name}" for name in ("adapter", "run.json", "metrics.jsonl")]
    started = time.perf_counter()
    subprocess.run(["scp", "-q", "-r", *options, *sources, str(dest)], check=True, timeout=SCP_TIMEOUT,
                   stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_rsync(server: SshServer, run_dir: Path, dest: Path) -> float:
    dest.mkdir(parents=True)
    ssh = " ".join(server.ssh_argv()[:-1])    # ssh plus its options, without the user@host
    remote = f"{server.user}@{server.host}"
    sources = [f"{remote}:{run_dir}/{name}" for name in ("adapter", "run.json", "metrics.jsonl")]
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", ssh, *sources, str(dest) + "/"], check=True, timeout=SCP_TIMEOUT,
                   stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


COPIERS = {"orch": lambda server, instance, run_dir, dest: time_orch(instance, run_dir, dest),
           "scp": lambda server, instance, run_dir, dest: time_scp(server, run_dir, dest),
           "rsync": lambda server, instance, run_dir, dest: time_rsync(server, run_dir, dest)}


def flush() -> None:
    """Write back what the last copy left dirty, so that each timed copy starts from the same state."""
    os.sync()
    time.sleep(0.5)


def bench_fetch(server: SshServer, scratch: Path, size_mb: int, reps: int, say) -> dict:
    instance = instance_for(server, "bench-fetch")
    run_dir = Path(instance.work_dir) / "runs" / "bench-20250101-000000"
    say(f"writing a {size_mb} MB adapter folder on the instance side ...")
    total = make_adapter(run_dir, size_mb)
    tools = ["orch", "scp"] + (["rsync"] if shutil.which("rsync") else [])
    if "rsync" not in tools:
        say("  rsync is not installed here: left out (apt-get install rsync)")
    seconds: dict[str, list[float]] = {t: [] for t in tools}
    for rep in range(reps):
        for tool in tools[rep % len(tools):] + tools[:rep % len(tools)]:     # each tool goes first in turn
            dest = scratch / f"{tool}-{rep}"
            flush()
            took = COPIERS[tool](server, instance, run_dir, dest)
            seconds[tool].append(took)
            say(f"  rep {rep + 1}/{reps} {tool:5s} {took:6.2f} s  {total / took / 1e6:6.0f} MB/s")
            shutil.rmtree(dest)
    out = {"bytes": total, "reps": reps}
    out["readers"] = bench_readers(instance, run_dir, scratch, reps, total, say)
    shutil.rmtree(run_dir)
    med = {t: statistics.median(v) for t, v in seconds.items()}
    for tool in tools:
        out[f"{tool}_seconds"] = [round(x, 3) for x in seconds[tool]]
        out[f"{tool}_mb_per_s"] = round(total / med[tool] / 1e6, 1)
    out["ratio"] = round(med["scp"] / med["orch"], 2)
    if "rsync" in med:
        out["ratio_vs_rsync"] = round(med["rsync"] / med["orch"], 2)
    return out


def _members(run_dir: Path) -> list[str]:
    adapter = sorted(f"adapter/{p.name}" for p in (run_dir / "adapter").iterdir())
    return adapter + ["run.json", "metrics.jsonl"]


class _StreamFile(io.RawIOBase):
    """The remote tar's stdout as a file object, for tarfile's stream mode."""

    def __init__(self, proc):
        self.proc, self.rest = proc, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if not self.rest:
            self.rest = self.proc.read(len(buf))
        n = min(len(buf), len(self.rest))
        buf[:n], self.rest = self.rest[:n], self.rest[n:]
        return n


def read_custom(transport, run_dir: Path, members: list[str], dest: Path) -> None:
    receive = importlib.import_module("orchestrator.fetch.receive")   # the module (fetch exports its function)

    proc = transport.open(["tar", "-C", str(run_dir), "-b", receive.TAR_BLOCKING, "-cf", "-", "--", *members])
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)           # as receive() does
    try:
        receive.unpack(receive._Source(proc), set(members), dest, set(), _NoBar())
    finally:
        sys.setswitchinterval(switch)
    assert proc.wait(60) == 0


def read_tarfile(transport, run_dir: Path, members: list[str], dest: Path) -> None:
    import tarfile

    receive = importlib.import_module("orchestrator.fetch.receive")   # the module (fetch exports its function)

    proc = transport.open(["tar", "-C", str(run_dir), "-b", receive.TAR_BLOCKING, "-cf", "-", "--", *members])
    stream = io.BufferedReader(_StreamFile(proc), buffer_size=receive.READ_SIZE)
    with tarfile.open(fileobj=stream, mode="r|", bufsize=receive.READ_SIZE) as tar:
        tar.extractall(dest, filter="data")
    while proc.read(receive.READ_SIZE):
        pass
    assert proc.wait(60) == 0


class _NoBar:
    def advance(self, n: int) -> None:
        pass


def bench_readers(instance: Instance, run_dir: Path, scratch: Path, reps: int, total: int, say) -> dict:
    """The stream alone, over one connection: the fetch's reader against tarfile's stream mode."""
    members = _members(run_dir)
    readers = {"custom": read_custom, "tarfile": read_tarfile}
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    with connect(instance) as transport:
        for rep in range(reps):
            for name in (("custom", "tarfile") if rep % 2 == 0 else ("tarfile", "custom")):
                dest = scratch / f"reader-{name}-{rep}"
                dest.mkdir()
                flush()
                started = time.perf_counter()
                readers[name](transport, run_dir, members, dest)
                took = time.perf_counter() - started
                seconds[name].append(took)
                assert (dest / "adapter" / "tokenizer.json").stat().st_size == 11_400_000
                say(f"  rep {rep + 1}/{reps} reader {name:7s} {took:6.2f} s  {total / took / 1e6:6.0f} MB/s")
                shutil.rmtree(dest)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    return {"custom_seconds": [round(x, 3) for x in seconds["custom"]],
            "tarfile_seconds": [round(x, 3) for x in seconds["tarfile"]],
            "custom_mb_per_s": round(total / med["custom"] / 1e6, 1),
            "tarfile_mb_per_s": round(total / med["tarfile"] / 1e6, 1),
            "ratio": round(med["tarfile"] / med["custom"], 2)}


def bench_deploy(server: SshServer, say) -> dict:
    """A no-change `orch deploy` over the loopback sshd: the second of two deploys of the demo job.

    The venv is marked present beforehand (building it means a pip install of torch, not what this measures)
    and the weights sync is left out (bench/sync.py measures it): what is timed is building the archives, the
    one install command (lock, verification of the payload and the inputs against their file lists, the
    venv check) and the decision to send nothing.
    """
    import hashlib

    from orchestrator.bundle import PAYLOAD_DIR, requirements_hash
    from orchestrator.deploy import deploy
    from orchestrator.layout import Layout

    instance = instance_for(server, "bench-deploy")
    job = Job(name="demo", instance=instance.name, recipe="tiny-verbosity",
              dataset=str(ROOT / "training_data" / "verbosity_demo.jsonl"), weights="s3://orch-demo/tiny-qwen3/")
    venv = Path(Layout(instance.work_dir).venv(requirements_hash()))
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".complete").write_text(hashlib.sha256((PAYLOAD_DIR / "requirements.txt").read_bytes()).hexdigest())
    subprocess.run(["chown", "-R", f"{server.user}:", str(Path(instance.work_dir) / "venvs")], check=False)
    with connect(instance) as transport:
        first = deploy(transport, instance, job, sync_weights=False, progress=False)
    times, sent, trips = [], [], []
    for _ in range(3):
        started = time.perf_counter()
        with connect(instance) as transport:
            again = deploy(transport, instance, job, sync_weights=False, progress=False)
            trips.append(transport.commands_run)
        times.append(time.perf_counter() - started)
        sent.append(again.payload_bytes_sent)
    say(f"  first deploy sent {first.payload_bytes_sent} payload bytes; no-change deploys sent {sent}")
    return {"first_payload_bytes": first.payload_bytes_sent, "payload_bytes_sent": max(sent),
            "seconds_median": round(statistics.median(times), 3), "round_trips": max(trips),
            "note": "connect + deploy(sync_weights=False), venv pre-marked complete"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500, help="adapter folder size (default 500)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each copy (default 5)")
    parser.add_argument("--json", action="store_true", help="also print one JSON document on stdout")
    args = parser.parse_args(argv)
    if args.size_mb < 20:
        parser.error("--size-mb must be at least 20")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="orch-bench-transfer-"))
    report: dict = {}
    try:
        with SshServer(gpu_case="none") as server:
            say(f"sshd on {server.host}:{server.port}; {os.cpu_count()} cores, load average "
                f"{os.getloadavg()[0]:.1f} (other work on the machine skews both tools' figures)")
            report["fetch"] = bench_fetch(server, scratch, args.size_mb, args.reps, say)
            f = report["fetch"]
            rsync = (f", rsync {f['rsync_mb_per_s']:.0f} MB/s (ratio {f['ratio_vs_rsync']:.2f}x)"
                     if "rsync_mb_per_s" in f else "")
            say(f"fetch-adapter {f['bytes'] / 1e6:.0f} MB, median of {f['reps']}: "
                f"orch {f['orch_mb_per_s']:.0f} MB/s, scp {f['scp_mb_per_s']:.0f} MB/s "
                f"(ratio {f['ratio']:.2f}x, target >= 1.0){rsync}")
            r = f["readers"]
            say(f"tar stream reader, median of {f['reps']}: custom {r['custom_mb_per_s']:.0f} MB/s, "
                f"tarfile r| {r['tarfile_mb_per_s']:.0f} MB/s (custom is {r['ratio']:.2f}x tarfile)")
            try:
                report["deploy"] = bench_deploy(server, say)
                d = report["deploy"]
                say(f"no-change deploy: {d['payload_bytes_sent']} payload bytes sent (target 0), "
                    f"{d['seconds_median'] * 1000:.0f} ms median (connect included), "
                    f"{d['round_trips']} round trip(s)")
            except Exception as exc:  # the deploy half must not hide the fetch figures
                report["deploy"] = {"error": f"{type(exc).__name__}: {exc}"}
                say(f"no-change deploy: not measured ({type(exc).__name__}: {exc})")
        report["load_average_end"] = round(os.getloadavg()[0], 2)
        say(f"load average at the end: {report['load_average_end']:.1f}")
    except SshdUnavailable as exc:
        say(f"cannot run the transfer bench: {exc}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
