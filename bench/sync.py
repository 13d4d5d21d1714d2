"""Weights sync throughput: `orch sync-weights` next to `aws s3 sync` and s5cmd, same data, same server.

    python bench/sync.py [--shards 4] [--shard-mb 240] [--rounds 3] [--module-args "--concurrency 8"]

One `rclone serve s3` on 127.0.0.1 serves a ~1 GB model-like set (shards + JSON files); every client gets
the explicit loopback endpoint (`--endpoint-url http://127.0.0.1:PORT`) and dummy keys. Each round runs
every tool once into an empty folder (the order rotates between rounds; boto3's download_file with its
defaults runs too, for reference), measuring the wall time of the whole command (process start to exit);
the folder is deleted right after, so that dirty pages never pile up. Reported: MB/s per round, the
median, and the ratios of the medians. Then the time of a no-op re-sync of 20 objects, end to end, through
the CLI and through the module alone.

Also timed: `python -m remote_payload.s3sync` alone (what runs on the instance) and s3transfer's
TransferManager over the same prefix with the same concurrency and part size (bench/boto3_download.py): the
library beside the module's hand-written ranged GETs.

Targets (issue 9): the whole `orch sync-weights` >= 1.0x s5cmd; no-op re-sync of 20 objects < 1 s.
Everything it creates lives in one temporary folder, removed at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.s3server import RcloneServer, s5cmd_binary  # noqa: E402

BUCKET = "orch-bench"
PREFIX = "weights/qwen-like/"
NOOP_PREFIX = "noop/twenty/"
MB = 1_000_000


def make_dataset(server: RcloneServer, shards: int, shard_bytes: int) -> int:
    total = 0
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        path = server.root / BUCKET / PREFIX / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = shard_bytes
            while left:
                block = os.urandom(min(left, 16 * 1024 * 1024))
                f.write(block)
                left -= len(block)
        total += shard_bytes
    index = {"metadata": {"total_size": total},
             "weight_map": {f"layer.{i}": f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)}}
    small = {
        "config.json": json.dumps({"model_type": "qwen3", "hidden_size": 5120}).encode(),
        "generation_config.json": b'{"do_sample": false}',
        "model.safetensors.index.json": json.dumps(index).encode(),
        "tokenizer.json": json.dumps({"model": {"vocab": {f"t{i}": i for i in range(60000)}}}).encode(),
        "tokenizer_config.json": b'{"model_max_length": 40960}',
    }
    for name, data in small.items():
        server.put_file(BUCKET, PREFIX + name, data)
        total += len(data)
    for i in range(20):
        server.put_file(BUCKET, f"{NOOP_PREFIX}file-{i:02d}.json", json.dumps({"i": i, "pad": "x" * 65536}).encode())
    return total


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".orch-"))


class Bench:
    def __init__(self, server: RcloneServer, base: Path, module_args: list[str] | None):
        self.server, self.base, self.module_args = server, base, module_args
        self.env = {**os.environ, **server.env(), "PYTHONDONTWRITEBYTECODE": "1"}
        self.transfer_rates: list[float] = []     # orch's own download phase, from its summary
        self.inventory = base / "inventory.yaml"
        self.models = base / "models"
        self.inventory.write_text(json.dumps({
            "instances": {"bench": {"transport": "local", "work_dir": str(base / "work"),
                                    "models_dir": str(self.models), "imds_url": ""}},
            "jobs": {
                "bench": {"instance": "bench", "recipe": "tiny-verbosity", "dataset": str(base / "data.jsonl"),
                          "weights": f"s3://{BUCKET}/{PREFIX}", "s3_endpoint": server.endpoint,
                          "s3_region": "us-east-1"},
                "noop": {"instance": "bench", "recipe": "tiny-verbosity", "dataset": str(base / "data.jsonl"),
                         "weights": f"s3://{BUCKET}/{NOOP_PREFIX}", "s3_endpoint": server.endpoint,
                         "s3_region": "us-east-1"}}}))
        (base / "data.jsonl").write_text("{}\n")

    def commands(self, dest: Path) -> dict[str, list[str]]:
        ep = self.server.endpoint
        s5 = s5cmd_binary()
        aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
        cmds = {
            # `orch sync-weights` on the local instance: the CLI, then s3sync on "the instance" (here).
            "orch sync-weights": [sys.executable, "-m", "orchestrator", "--inventory", str(self.inventory),
                                  "sync-weights", "bench", "--json"],
            "s5cmd": [s5, "--endpoint-url", ep, "cp", f"s3://{BUCKET}/{PREFIX}*", f"{dest}/"] if s5 else None,
            "aws s3 sync": [aws, "s3", "sync", f"s3://{BUCKET}/{PREFIX}", str(dest), "--endpoint-url", ep,
                            "--only-show-errors"] if aws else None,
        }
        # The library beside the module's own ranged GETs: s3transfer's TransferManager with the module's
        # concurrency and part size, and for reference boto3's download_file with its defaults.
        boto = [sys.executable, str(REPO / "bench" / "boto3_download.py")]
        cmds["s3transfer manager"] = [*boto, "manager", ep, BUCKET, PREFIX, str(dest)]
        cmds["boto3 download_file"] = [*boto, "defaults", ep, BUCKET, PREFIX, str(dest)]
        # The module alone (what runs on the instance), with --module-args when tuning.
        cmds["s3sync module"] = [sys.executable, "-m", "remote_payload.s3sync", "--source",
                                 f"s3://{BUCKET}/{PREFIX}", "--dest", str(dest), "--endpoint", ep,
                                 "--json", *(self.module_args or [])]
        return {k: v for k, v in cmds.items() if v}

    def dest_for(self, tool: str = "") -> Path:
        # orch writes to models_dir/<last part of the prefix>; the others into the same place.
        return self.models / PREFIX.rstrip("/").rsplit("/", 1)[-1]

    def timed(self, argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        p = subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True)
        return time.perf_counter() - start, p

    def one(self, tool: str, argv: list[str], expected: int) -> float:
        dest = self.dest_for(tool)
        shutil.rmtree(self.models, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        seconds, p = self.timed(argv)
        if p.returncode != 0:
            raise SystemExit(f"{tool} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        if tool == "orch sync-weights":
            doc = json.loads(p.stdout)
            self.transfer_rates.append(doc["downloaded_bytes"] / MB / max(doc["download_seconds"], 1e-9))
        got = tree_bytes(dest)
        shutil.rmtree(self.models, ignore_errors=True)   # before writeback: never pile up dirty pages
        if got != expected:
            raise SystemExit(f"{tool} wrote {got} bytes, expected {expected}")
        return seconds


def noop_times(bench: Bench) -> dict[str, float]:
    dest = bench.models / "twenty"
    shutil.rmtree(bench.models, ignore_errors=True)
    cli = [sys.executable, "-m", "orchestrator", "--inventory", str(bench.inventory), "sync-weights", "noop", "--json"]
    seconds, p = bench.timed(cli)
    assert p.returncode == 0, p.stderr
    out = {}
    seconds, p = bench.timed(cli)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["downloaded_files"] == 0 and doc["files"] == 20, p.stdout
    assert doc["requests"] == {"ListObjectsV2": 1}, doc["requests"]
    out["orch sync-weights (CLI, end to end)"] = seconds
    module = [sys.executable, "-m", "remote_payload.s3sync", "--source", f"s3://{BUCKET}/{NOOP_PREFIX}",
              "--dest", str(dest), "--endpoint", bench.server.endpoint, "--json"]
    seconds, p = bench.timed(module)
    assert p.returncode == 0 and json.loads(p.stdout)["downloaded_files"] == 0, p.stderr
    out["python -m remote_payload.s3sync"] = seconds
    s5 = s5cmd_binary()
    if s5:
        seconds, p = bench.timed([s5, "--endpoint-url", bench.server.endpoint, "sync",
                                  f"s3://{BUCKET}/{NOOP_PREFIX}*", f"{dest}/"])
        out["s5cmd sync (for reference)"] = seconds
    shutil.rmtree(bench.models, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-mb", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=3, help="runs per tool (median reported) [3]")
    ap.add_argument("--module-args", default=None,
                    help="also time `python -m remote_payload.s3sync` alone with these options (tuning)")
    ap.add_argument("--workdir", default=None, help="where the temporary folder goes [$TMPDIR]")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="orch-bench-sync-", dir=args.workdir))
    server = RcloneServer(base / "server")
    try:
        total = make_dataset(server, args.shards, args.shard_mb * MB)
        server.start()
        bench = Bench(server, base, None if args.module_args is None else shlex.split(args.module_args))
        client = server.client()
        for prefix in (PREFIX, NOOP_PREFIX):    # rclone hashes files for ETags on the first listing: not timed
            client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        commands = bench.commands(bench.dest_for(""))
        print(f"set: {args.shards} x {args.shard_mb} MB shards + 5 JSON files = {total / MB:.0f} MB, "
              f"served by rclone serve s3 at {server.endpoint}; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f} at start")
        results: dict[str, list[float]] = {tool: [] for tool in commands}
        tools = list(commands)
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[:r % len(tools)]
            for tool in order:
                seconds = bench.one(tool, commands[tool], total)
                results[tool].append(total / MB / seconds)
                print(f"  round {r + 1}: {tool:<20} {seconds:6.2f} s  {total / MB / seconds:7.0f} MB/s", flush=True)
        med = {tool: statistics.median(v) for tool, v in results.items()}
        print("\nthroughput (median of rounds, wall time of the whole command):")
        for tool, value in med.items():
            print(f"  {tool:<20} {value:7.0f} MB/s   runs: " + ", ".join(f"{v:.0f}" for v in results[tool]))
        orch = med.get("orch sync-weights")
        if bench.transfer_rates:
            print(f"  (orch's transfer phase alone, without its two Python start-ups: "
                  f"{statistics.median(bench.transfer_rates):.0f} MB/s median)")
        if orch and "s5cmd" in med:
            print(f"  orch / s5cmd         {orch / med['s5cmd']:.2f}x   (target >= 1.0x)")
        if orch and "aws s3 sync" in med:
            print(f"  orch / aws s3 sync   {orch / med['aws s3 sync']:.2f}x")
        if "s3sync module" in med and "s3transfer manager" in med:
            print(f"  module / s3transfer  {med['s3sync module'] / med['s3transfer manager']:.2f}x   "
                  "(the hand-written ranged GETs stay only while > 1)")
        if "s3sync module" in med and "s5cmd" in med:
            print(f"  module / s5cmd       {med['s3sync module'] / med['s5cmd']:.2f}x")
        print("\nno-op re-sync of 20 objects (everything already there), end to end:")
        for name, seconds in noop_times(bench).items():
            print(f"  {name:<38} {seconds:.3f} s" + ("   (target < 1 s)" if name.startswith("orch") else ""))
        print(f"load average {os.getloadavg()[0]:.1f} at the end (the machine is shared: numbers vary run to run)")
    finally:
        server.close()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
