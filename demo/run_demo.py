"""`make demo`: the whole product on this one machine, with no cloud account.

Starts an S3 server on 127.0.0.1 (moto's HTTP server, the tests' MotoServer) holding a tiny Qwen3 built in code, with
`config.json` stored gzipped (with Content-Encoding: gzip) and `tokenizer_config.json` gzipped without
the header, as the user's bucket had them. Then it runs, against the `local` instance of inventory.yaml:

    orch preflight demo
    orch train demo --follow            (deploy + weights sync from S3 + detached 4-bit QLoRA training)
    orch fetch-adapter demo --dest .orch/demo/adapters
    orch eval demo                      (TERSE vs VERBOSE separation table)

and stops the server it started.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("ORCH_DEMO_DIR") or ROOT / ".orch" / "demo")
BUCKET, PREFIX = "orch-demo", "tiny-qwen3/"


def upload_tiny_model(s3) -> None:
    from remote_payload.tiny_model import build_tiny_model

    model_dir = STATE / "tiny-qwen3"
    if not (model_dir / "config.json").exists():
        shutil.rmtree(model_dir, ignore_errors=True)
        build_tiny_model(model_dir)
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        key = PREFIX + path.relative_to(model_dir).as_posix()
        body, extra = path.read_bytes(), {}
        if path.name == "config.json":
            body, extra = gzip.compress(body), {"ContentEncoding": "gzip"}
        elif path.name == "tokenizer_config.json":
            body = gzip.compress(body)  # gzipped bytes, no header: only the magic number tells
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
    print(f"demo: s3://{BUCKET}/{PREFIX} holds the tiny Qwen3 (config.json and tokenizer_config.json gzipped)",
          flush=True)


def orch(*args: str, env: dict) -> int:
    print(f"\n$ orch {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env).returncode


def main() -> int:
    from tests.fixtures.s3server import MotoServer  # the same real S3 server the tests use

    STATE.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with MotoServer(STATE / "s3server") as server:
        env = {**os.environ, **server.env(), "ORCH_DEMO_S3_ENDPOINT": server.endpoint,
               "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
        for name in ("AWS_PROFILE", "ORCH_INVENTORY", "ORCH_ENV_FILE"):
            env.pop(name, None)
        upload_tiny_model(server.client())
        dest = STATE / "adapters"
        for step in (("preflight", "demo"), ("train", "demo", "--follow"),
                     ("fetch-adapter", "demo", "--dest", str(dest)), ("eval", "demo")):
            code = orch(*step, env=env)
            if code != 0:
                print(f"\ndemo: `orch {' '.join(step)}` failed with exit code {code}", file=sys.stderr)
                return code
    adapters = sorted((dest / "demo").glob("*/adapter"), key=lambda p: p.stat().st_mtime)
    print(f"\ndemo: done in {time.time() - started:.0f} s; the adapter is in {adapters[-1] if adapters else dest}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
