"""Latency of the served model, seed 001's method: p50/p90 for short and long outputs, and tokens/s.

    python -m remote_payload.serve.bench --export DIR [--base BASE] [--vllm-url http://127.0.0.1:8000]
                                         [--requests 10] [--short-tokens 32] [--long-tokens 512]
                                         [--concurrency 1] [--json]

Runs in the serving venv, next to vLLM (the controller runs it over SSH, so the network is not measured).
"Constant max_new_tokens, temperature=0, same server settings": every request is rendered like /generate
(prompting.encode_prompt, the evaluation prompts in turn) and asks for exactly N tokens (`max_tokens` N and
`ignore_eos`, so a model that stops early cannot flatter the numbers): short = 32 output tokens in the TERSE
style, long = 512 in the VERBOSE style. One warm-up request per class is not counted. With --concurrency 1
(the default) the requests go one after another and the figures are per-request latency; higher values send
that many at once and add the aggregate throughput.
Output: per class {requests, output_tokens, p50_s, p90_s, mean_s, tokens_per_s (per request, median),
aggregate_tokens_per_s}; exit 0, or 1 when vLLM fails a request (its message on stderr).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

CLASSES = {"short": "TERSE", "long": "VERBOSE"}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), numpy's default method."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def one_request(url: str, body: dict, timeout: float) -> tuple[float, int]:
    started = time.monotonic()
    data = post(url, body, timeout)
    return time.monotonic() - started, int(data["usage"]["completion_tokens"])


def run_class(backend, url: str, prompts: list[str], style: str, tokens: int, requests: int, concurrency: int,
              timeout: float) -> dict[str, Any]:
    def body(i: int) -> dict:
        request = SimpleNamespace(prompt=prompts[i % len(prompts)], style=style, system=None,
                                  max_new_tokens=tokens, temperature=0.0, top_p=None)
        body = {**backend.completion_body(request), "temperature": 0.0, "max_tokens": tokens, "min_tokens": 0,
                "ignore_eos": True}
        body.pop("stop_token_ids")     # they would end the answer early despite ignore_eos
        return body

    one_request(url, body(0), timeout)  # warm-up, not counted
    wall = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda i: one_request(url, body(i), timeout), range(requests)))
    wall = time.monotonic() - wall
    latencies = [r[0] for r in results]
    counts = [r[1] for r in results]
    return {"style": style, "requests": requests, "concurrency": concurrency, "max_new_tokens": tokens,
            "output_tokens": {"min": min(counts), "max": max(counts)},
            "p50_s": round(percentile(latencies, 50), 4), "p90_s": round(percentile(latencies, 90), 4),
            "mean_s": round(statistics.fmean(latencies), 4),
            "tokens_per_s": round(statistics.median(c / t for c, t in zip(counts, latencies)), 2),
            "aggregate_tokens_per_s": round(sum(counts) / wall, 2)}


def bench(export_dir: Path, base: Path | None, vllm_url: str, requests: int, short_tokens: int, long_tokens: int,
          concurrency: int, timeout: float = 600.0) -> dict[str, Any]:
    from ..evaluate import load_prompts
    from .api import Backend

    if requests < 1 or concurrency < 1 or short_tokens < 1 or long_tokens < 1:
        raise ValueError("--requests, --concurrency and the token counts must be >= 1")
    backend = Backend(export_dir, base, vllm_url, timeout)
    url = f"{vllm_url.rstrip('/')}/v1/completions"
    prompts = load_prompts()
    sizes = {"short": short_tokens, "long": long_tokens}
    report = {name: run_class(backend, url, prompts, style, sizes[name], requests, concurrency, timeout)
              for name, style in CLASSES.items()}
    return {"model": backend.model, "kind": backend.record["kind"], "vllm": vllm_url, "method":
            "temperature 0, ignore_eos, fixed max_tokens, warm-up excluded", **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.serve.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--export", required=True, type=Path)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--short-tokens", type=int, default=32)
    parser.add_argument("--long-tokens", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = bench(args.export.resolve(), args.base, args.vllm_url, args.requests, args.short_tokens,
                       args.long_tokens, args.concurrency)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in CLASSES:
            r = report[name]
            print(f"{name:<5} {r['max_new_tokens']:>4} tokens x {r['requests']}: p50 {r['p50_s']:.3f}s  p90 "
                  f"{r['p90_s']:.3f}s  {r['tokens_per_s']:.1f} tokens/s per request, "
                  f"{r['aggregate_tokens_per_s']:.1f} aggregate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
