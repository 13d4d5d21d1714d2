"""Build (once) the serving and quantizing venvs. Stdlib only: runs with the instance's python3, before any venv.

    python3 -m remote_payload.venvs install serve|quantize --root DIR [--device auto|cpu|cuda]
                                   [--python python3] [--torch-index URL] [--json]
    python3 -m remote_payload.venvs path    serve|quantize --root DIR [--device ...]   # exit 1 if not built

Training, serving and quantizing pin different torch/transformers (vllm 0.32: transformers 5.19; llmcompressor
0.14: transformers 5.15-5.17; training: 5.23), so each has its own venv. Like the training venv, a venv is
named by the sha256 of its requirements file (ROOT/serve-cpu-<hash>): a changed file builds a new one, an
unchanged one is reused. `.complete` is written last, so a half-built venv (killed installer, full disk) is
rebuilt next time; an exclusive flock on ROOT/.<name>.lock makes a second installer wait for the first and
then reuse its venv. Steps: `python -m venv`, `pip install torch==X` first (from --torch-index when given:
the CUDA build the driver supports), the requirements (locked files with --no-deps, so pip cannot pull the
CUDA torchvision/torchaudio/torchcodec that break `import vllm` on CPU; any that slipped in are uninstalled),
then an import check. Prints the venv, its python, whether it was created, seconds and size (JSON with --json).
Exit status: 0 ready, 1 the install failed (pip's last lines on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {
    # kind -> device -> (requirements file, locked, import check)
    "serve": {"cpu": ("requirements-serve-cpu.txt", True), "cuda": ("requirements-serve-cuda.txt", False)},
    "quantize": {"cpu": ("requirements-quantize.txt", True), "cuda": ("requirements-quantize.txt", True)},
}
IMPORT_CHECK = {"serve": "import vllm, transformers, fastapi, uvicorn, httpx",
                "quantize": "import llmcompressor, compressed_tensors, transformers"}
BROKEN_ON_CPU = ("torchvision", "torchaudio", "torchcodec")
SIZE_NOTE = {"serve": "minutes: a 130 MB vllm wheel, ~3.5 GB of venv", "quantize": "minutes: ~1.5 GB of venv"}


class InstallFailed(Exception):
    pass


def detect_device() -> str:
    return "cuda" if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0") else "cpu"


def requirements_for(kind: str, device: str) -> tuple[Path, bool]:
    name, locked = KINDS[kind][device]
    return HERE / name, locked


def venv_dir(root: Path, kind: str, device: str) -> Path:
    requirements, _ = requirements_for(kind, device)
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    return root / f"{kind}-{device}-{digest}"


def torch_pin(requirements: Path) -> str | None:
    for line in requirements.read_text().splitlines():
        if line.strip().startswith("torch=="):
            return line.strip()
    return None


def dir_size(path: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def _run(argv: list[str], what: str, log) -> None:
    print(f"venvs: {what}", file=log, flush=True)
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n    ".join(result.stdout.strip().splitlines()[-15:])
        raise InstallFailed(f"{what} failed (exit {result.returncode}):\n    {tail}")


def build(target: Path, kind: str, device: str, python: str, torch_index: str | None, log) -> None:
    requirements, locked = requirements_for(kind, device)
    shutil.rmtree(target, ignore_errors=True)
    _run([python, "-m", "venv", str(target)], f"creating {target}", log)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    pin = torch_pin(requirements)
    if pin:
        index = ["--index-url", torch_index] if torch_index else []
        _run([*pip, *index, pin], f"installing {pin} first", log)
    _run([*pip, *(["--no-deps"] if locked else []), "-r", str(requirements)],
         f"installing {requirements.name} ({SIZE_NOTE.get(kind, 'minutes')})", log)
    if device == "cpu":
        present = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                                 capture_output=True, text=True).stdout
        stray = [p for p in BROKEN_ON_CPU if f'"{p}"' in present]
        if stray:
            _run([str(target / "bin" / "python"), "-m", "pip", "uninstall", "-y", "-q", *stray],
                 f"removing {', '.join(stray)} (CUDA builds that break imports on CPU)", log)
    _run([str(target / "bin" / "python"), "-c", IMPORT_CHECK[kind]], "checking the imports", log)


def install(kind: str, root: str | Path, device: str = "auto", python: str = sys.executable,
            torch_index: str | None = None, log=sys.stderr) -> dict:
    """The ready venv for `kind`, built if missing; concurrent callers wait for one build."""
    if kind not in KINDS:
        raise ValueError(f"unknown venv kind {kind!r} (known: {', '.join(KINDS)})")
    device = detect_device() if device == "auto" else device
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    target = venv_dir(root, kind, device)
    started = time.monotonic()
    with open(root / f".{target.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"venvs: another installer is building {target.name}; waiting for it", file=log, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        created = not (target / ".complete").is_file()
        if created:
            build(target, kind, device, python, torch_index, log)
            facts = {"seconds": round(time.monotonic() - started, 1), "bytes": dir_size(target),
                     "requirements": requirements_for(kind, device)[0].name, "built_at": time.time()}
            (target / ".complete").write_text(json.dumps(facts) + "\n")
    facts = json.loads((target / ".complete").read_text() or "{}")
    return {"kind": kind, "device": device, "venv": str(target), "python": str(target / "bin" / "python"),
            "created": created, "seconds": round(time.monotonic() - started, 1),
            "build_seconds": facts.get("seconds"), "bytes": facts.get("bytes")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m remote_payload.venvs", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("install", "path"))
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--root", required=True, help="folder holding the venvs (e.g. ~/orch/venvs)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--python", default=sys.executable, help="interpreter the venv is made from")
    parser.add_argument("--torch-index", help="pip index for torch (e.g. https://download.pytorch.org/whl/cu126)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "path":
        device = detect_device() if args.device == "auto" else args.device
        target = venv_dir(Path(args.root).resolve(), args.kind, device)
        if not (target / ".complete").is_file():
            print(f"venvs: {target} is not built; run: python3 -m remote_payload.venvs install {args.kind} "
                  f"--root {args.root}", file=sys.stderr)
            return 1
        print(target / "bin" / "python")
        return 0
    try:
        result = install(args.kind, args.root, args.device, args.python, args.torch_index)
    except InstallFailed as exc:
        print(f"venvs: {exc}", file=sys.stderr)
        return 1
    size = f"{result['bytes'] / 2**30:.1f} GiB" if result["bytes"] else "?"
    print(json.dumps(result) if args.json else
          f"{result['kind']} venv {'built' if result['created'] else 'reused'}: {result['python']} ({size}, "
          f"built in {result['build_seconds']}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
