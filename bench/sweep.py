"""Scale-out plumbing figures: a tiny sweep on N slots against the same runs one after another, and a torchrun DDP
run's samples/s against the single-process run.

    python bench/sweep.py [--points 4] [--steps 8] [--ddp-steps 20] [--json OUT.json] [--skip-sweep] [--skip-ddp]

Sweep: two loopback sshd instances (tests/fixtures/sshd.py) -- a replayed 4 x A10G box and a 1-GPU box -- and a
moto S3 server holding the tiny Qwen3; `orch sweep start` of the same points once with `instances: [big]` (4
slots) and once with `instances: [small]` (1 slot: the sequential baseline). DDP: the payload itself, `python -m
remote_payload.train` against `torchrun --standalone --nproc-per-node 2` (gloo), same job; samples/s from the
step records (the DDP run's count every rank's samples).

On CPU the ratios show the plumbing, not GPU scaling: the training processes share this machine's cores. On a
GPU machine run the DDP half with a CUDA recipe to get real figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.sshd import SshServer, write_inventory  # noqa: E402

DATASET = ROOT / "training_data" / "verbosity_demo.jsonl"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}


def _upload_tiny_model(s3, model_dir: Path) -> str:
    client = s3.client()
    client.create_bucket(Bucket="bench")
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        client.put_object(Bucket="bench", Key="tiny/" + path.relative_to(model_dir).as_posix(), Body=path.read_bytes())
    return "s3://bench/tiny/"


def _orch(root: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=root, env={**os.environ, **ENV},
                          capture_output=True, text=True, timeout=timeout)


def bench_sweep(work: Path, model_dir: Path, points: int, steps: int) -> dict:
    from tests.fixtures.payload_venv import build_pinned_venv
    from tests.fixtures.s3server import MotoServer as S3Server

    venv = build_pinned_venv()
    with S3Server() as s3, SshServer(gpu_case="a10g-x4") as big, SshServer(gpu_case="a10g-idle") as small:
        weights = _upload_tiny_model(s3, model_dir)
        instances = {"big": big.instance("big", python_env=str(venv), expect={"gpu_count": 4}),
                     "small": small.instance("small", python_env=str(venv))}
        job = {"instance": "big", "recipe": "tiny-verbosity", "dataset": str(DATASET), "weights": weights,
               "s3_endpoint": s3.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward",
               "overrides": {"max_steps": steps, "logging_steps": steps, "save_steps": steps, "eval_after_train": False}}
        write_inventory(work, instances, {"tiny": job}, env={})
        out = {}
        for label, where in (("sequential_1_slot", "small"), ("parallel_4_slots", "big")):
            # both timings include the instance's first deploy (payload, weights): one box each, the same work
            spec = work / f"{label}.yaml"
            spec.write_text(json.dumps({"name": label.replace("_", "-"), "job": "tiny",
                                        "grid": {"seed": list(range(1, points + 1))}, "instances": [where]}))
            t0 = time.monotonic()
            done = _orch(work, "sweep", "start", str(spec), "--poll", "1", "--json")
            out[label] = {"wall_s": round(time.monotonic() - t0, 1), "ok": done.returncode == 0}
            if done.returncode != 0:
                out[label]["error"] = done.stderr[-1500:]
        out["speedup"] = round(out["sequential_1_slot"]["wall_s"] / max(out["parallel_4_slots"]["wall_s"], 1e-9), 2)
        return out


def _samples_per_s(run_dir: Path) -> float | None:
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [m["samples_per_second"] for m in steps if m.get("event") == "step" and m.get("samples_per_second")]
    return round(sum(rates) / len(rates), 2) if rates else None


def bench_ddp(work: Path, model_dir: Path, steps: int) -> dict:
    bundle = work / "bundle"
    (bundle / "data" / "eval").mkdir(parents=True)
    (bundle / "remote_payload").symlink_to(ROOT / "remote_payload", target_is_directory=True)
    shutil.copy(DATASET, bundle / "data" / DATASET.name)
    (bundle / "job.json").write_text(json.dumps({"job": "bench", "recipe": "tiny-verbosity", "dataset":
                                                 f"data/{DATASET.name}", "overrides": {
                                                     "max_steps": steps, "logging_steps": 5, "save_steps": 1000,
                                                     "eval_after_train": False}}))
    torchrun = Path(sys.executable).with_name("torchrun")
    out = {}
    for label, head in (("single_process", [sys.executable]),
                        ("ddp_2_ranks", [str(torchrun), "--standalone", "--nproc-per-node", "2"])):
        run_dir = work / label
        cmd = [*head, "-m", "remote_payload.train", "--job", "job.json", "--model-dir", str(model_dir),
               "--run-dir", str(run_dir)]
        t0 = time.monotonic()
        done = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, timeout=1800)
        out[label] = {"wall_s": round(time.monotonic() - t0, 1), "ok": done.returncode == 0,
                      "samples_per_s": _samples_per_s(run_dir) if done.returncode == 0 else None}
        if done.returncode != 0:
            out[label]["error"] = done.stderr[-1500:]
    single, ddp = out["single_process"]["samples_per_s"], out["ddp_2_ranks"]["samples_per_s"]
    out["ratio"] = round(ddp / single, 2) if single and ddp else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--ddp-steps", type=int, default=20)
    parser.add_argument("--json")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-ddp", action="store_true")
    args = parser.parse_args()
    from remote_payload.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="orch-bench-sweep-"))
    os.chmod(work, 0o755)
    try:
        model_dir = build_tiny_model(work / "model")
        result = {"cpu_count": os.cpu_count()}
        if not args.skip_ddp:
            result["ddp"] = bench_ddp(work / "ddp", model_dir, args.ddp_steps)
            print("DDP:", json.dumps(result["ddp"]), flush=True)
        if not args.skip_sweep:
            (work / "sweep").mkdir()
            result["sweep"] = bench_sweep(work / "sweep", model_dir, args.points, args.steps)
            print("sweep:", json.dumps(result["sweep"]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
