"""Shared fixtures of the payload tests (loaded with `pytest_plugins = ["tests.conftest_payload"]`).

The tiny Qwen3 is built once per session and trained once per session with the `tiny-verbosity` recipe on the
shipped demo dataset; every test that needs a trained adapter reads that one run. Likewise the classification
tests share one `tiny-movielens` run on the synthetic MovieLens set (a tiny Qwen3 built with head_gain 8). Payload commands run the way
the instance runs them: `python -m remote_payload.<module>` from the root of a bundle directory holding
`remote_payload/`, `job.json` and `data/<dataset>.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "remote_payload"
DEMO_DATASET = ROOT / "training_data" / "verbosity_demo.jsonl"
MOVIELENS = {split: ROOT / "training_data" / f"movielens_demo_{split}.jsonl" for split in ("train", "eval", "test")}
CHILD_ENV = {"PYTHONWARNINGS": "ignore::FutureWarning"}


def make_bundle(root: Path, dataset: Path, recipe: str = "tiny-verbosity", overrides: dict | None = None,
                job: str = "demo", eval_dataset: Path | None = None) -> Path:
    """A bundle as the controller extracts it: remote_payload/ (linked), job.json, data/<dataset>
    (and data/eval/<eval dataset>)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "remote_payload").symlink_to(PAYLOAD, target_is_directory=True)
    (root / "data" / "eval").mkdir(parents=True)
    shutil.copy(dataset, root / "data" / dataset.name)
    doc = {"job": job, "recipe": recipe, "overrides": overrides or {}, "dataset": f"data/{dataset.name}"}
    if eval_dataset is not None:
        shutil.copy(eval_dataset, root / "data" / "eval" / eval_dataset.name)
        doc["eval_dataset"] = f"data/eval/{eval_dataset.name}"
    (root / "job.json").write_text(json.dumps(doc))
    return root


def payload_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"remote_payload.{module}", *args]


def run_payload(module: str, *args: str, bundle: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a payload module in a child process from the bundle root; returns the finished process."""
    return subprocess.run(payload_command(module, *args), cwd=bundle, env={**os.environ, **CHILD_ENV},
                          capture_output=True, text=True, timeout=timeout)


def start_payload(module: str, *args: str, bundle: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(payload_command(module, *args), cwd=bundle, env={**os.environ, **CHILD_ENV},
                            stdout=handle, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def isolated_process_state():
    """Run a payload `main()` in this process without leaking its environment variables or signal handler."""
    import torch

    saved_env, saved_term, saved_threads = dict(os.environ), signal.getsignal(signal.SIGTERM), torch.get_num_threads()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        signal.signal(signal.SIGTERM, saved_term)
        torch.set_num_threads(saved_threads)


def call_main(main, argv: list[str]) -> int:
    with isolated_process_state():
        return main(argv)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class TrainedRun:
    bundle: Path
    model_dir: Path
    run_dir: Path
    exit_code: int
    seconds: float

    @property
    def adapter(self) -> Path:
        return self.run_dir / "adapter"

    def run_json(self) -> dict:
        return json.loads((self.run_dir / "run.json").read_text())

    def eval_json(self) -> dict:
        return json.loads((self.run_dir / "eval.json").read_text())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from remote_payload.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3-tiny")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model_dir) -> TrainedRun:
    """The demo job (tiny-verbosity on training_data/verbosity_demo.jsonl), trained once for the whole session."""
    from remote_payload import train

    work = tmp_path_factory.mktemp("trained")
    bundle = make_bundle(work / "bundle", DEMO_DATASET)
    run_dir = work / "runs" / "demo-run"
    t0 = time.monotonic()
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                                  "--run-dir", str(run_dir)])
    return TrainedRun(bundle, tiny_model_dir, run_dir, code, time.monotonic() - t0)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """The tiny Qwen3 with an output layer that can be decisive (see tiny_model.py's head_gain)."""
    from remote_payload.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-classifier") / "qwen3-tiny", head_gain=8.0)


@pytest.fixture(scope="session")
def movielens_run(tmp_path_factory, tiny_classifier_dir) -> TrainedRun:
    """tiny-movielens on the synthetic MovieLens train/eval split, trained once for the whole session (it stops
    early, once its eval F1 stops improving)."""
    from remote_payload import train

    work = tmp_path_factory.mktemp("movielens")
    bundle = make_bundle(work / "bundle", MOVIELENS["train"], recipe="tiny-movielens", job="movielens",
                         eval_dataset=MOVIELENS["eval"])
    run_dir = work / "runs" / "movielens-run"
    t0 = time.monotonic()
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tiny_classifier_dir),
                                  "--run-dir", str(run_dir)])
    return TrainedRun(bundle, tiny_classifier_dir, run_dir, code, time.monotonic() - t0)
