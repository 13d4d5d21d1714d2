"""Install what a deploy needs on the instance -- the payload folder, the job's inputs, the venv -- under the
instance's deploy lock. Stdlib only, Python >= 3.6 syntax, self-contained (no imports from this package):
the first deploy of a new payload runs it with `python3 -c`, before the payload folder exists.

    install.py --lock WORK/locks/deploy.lock [--holder JSON]
               [--item NAME=DIR ...]                      content-addressed folders (payload, job)
               [--venv DIR --requirements FILE [--pip-arg ARG ...]]
               [--check-env PYTHON] [--report-venv DIR]

Protocol (JSON lines on stdout; the controller answers on stdin):

    {"event": "waiting", "holder": {...}}   every few seconds while another deploy holds the lock
    {"event": "locked"}                      the lock is ours; every step below happens under it
    {"event": "broken", "item": N, "reason"} a folder whose files do not match its own file list
    {"event": "need", "items": [N, ...]}     then, for each item named, in order, the controller writes an
                                             8-byte big-endian length and that many bytes of a tar archive
    {"event": "installed", "item": N, "files": n, "bytes": b}
    {"event": "venv", "status": "present" | "building" | "built", "dir": DIR}
    {"event": "env", "versions": {...}}      what --check-env PYTHON has installed
    {"event": "done"} | {"event": "error", "message", "hint", "exit_code"}

A folder is trusted only when it verifies against the file list it carries (`.files.json`: path -> sha256,
written by the controller into every tar): a folder with `.complete` but a missing or changed file is
rebuilt, never reused. Each archive is extracted into a fresh `DIR.partial-<pid>` (refusing absolute paths,
`..`, links and devices), verified, then renamed into place, so a reader never sees half a folder. The
venv is built in place under the lock; `.complete` (holding the requirements' sha256) is written last.
"""

import argparse
import errno
import fcntl
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import time

FILES = ".files.json"
COMPLETE = ".complete"
WAIT_REPORT_S = 5.0
FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
ENV_CHECK = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


class Failure(Exception):
    def __init__(self, message, hint=None, exit_code=1):
        Exception.__init__(self, message)
        self.message, self.hint, self.exit_code = message, hint, exit_code


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# --- the deploy lock ---------------------------------------------------------------------------

class DeployLock:
    """`WORK/locks/deploy.lock`, held while a deploy changes the instance; `LOCK.holder` says by whom."""

    def __init__(self, path, holder=None, on_event=None):
        self.path, self.holder, self.fd = path, dict(holder or {}), None
        self.on_event = on_event or emit

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        last_report = 0.0
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.time() - last_report >= WAIT_REPORT_S or not last_report:
                self.on_event("waiting", holder=self._read_holder())
                last_report = time.time()
            time.sleep(0.1)
        self.holder.update(pid=os.getpid(), since=time.time())
        _write_atomic(self.path + ".holder", json.dumps(self.holder))
        self.on_event("locked")
        return self

    def __exit__(self, *exc):
        try:
            os.unlink(self.path + ".holder")
        except OSError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def _read_holder(self):
        try:
            with open(self.path + ".holder") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}


def _write_atomic(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# --- content-addressed folders -----------------------------------------------------------------

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def problems(folder):
    """Why `folder` cannot be trusted (empty list: it verifies against its own file list)."""
    if not os.path.isdir(folder):
        return ["missing"]
    try:
        with open(os.path.join(folder, FILES)) as f:
            listed = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ["its file list %s cannot be read (%s)" % (FILES, exc)]
    found = []
    for rel, digest in sorted(listed.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path) or os.path.islink(path):
            found.append("%s is missing" % rel)
        elif sha256_of(path) != digest:
            found.append("%s differs from the file list" % rel)
    if not os.path.exists(os.path.join(folder, COMPLETE)):
        found.append("%s is missing (an install was interrupted)" % COMPLETE)
    return found


def _members(tar, root):
    for member in tar:
        name = member.name
        target = os.path.realpath(os.path.join(root, name))
        if name.startswith("/") or ".." in name.split("/") or not target.startswith(root + os.sep):
            raise Failure("refusing %r: it would land outside %s" % (name, root), exit_code=2)
        if not (member.isfile() or member.isdir()):
            raise Failure("refusing %r: only plain files and folders are allowed" % name, exit_code=2)
        member.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0o700)
        yield member


class _Exactly:
    """A file object that yields exactly `n` bytes of `stream`, then EOF."""

    def __init__(self, stream, n):
        self.stream, self.left = stream, n

    def read(self, size=-1):
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size)
        if not data:
            raise Failure("the archive ended %d bytes early (the controller went away?)" % self.left)
        self.left -= len(data)
        return data


def receive(folder, stream):
    """Read one length-prefixed tar from `stream` into `folder`: a fresh partial folder, verified, renamed."""
    head = stream.read(8)
    if len(head) != 8:
        raise Failure("no archive arrived for %s" % folder)
    (size,) = struct.unpack(">Q", head)
    body = _Exactly(stream, size)
    partial = "%s.partial-%d" % (folder, os.getpid())
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    root = os.path.realpath(partial)
    try:
        with tarfile.open(fileobj=body, mode="r|") as tar:
            for member in _members(tar, root):
                tar.extract(member, partial, set_attrs=False, **FILTER)
                if member.isfile():
                    os.chmod(os.path.join(partial, member.name), member.mode)
        while body.read(1 << 16):      # trailing padding
            pass
        open(os.path.join(partial, COMPLETE), "w").close()
        wrong = problems(partial)
        if wrong:
            raise Failure("the archive for %s does not match its own file list: %s" % (folder, "; ".join(wrong[:5])))
        old = "%s.old-%d" % (folder, os.getpid())
        if os.path.exists(folder):
            os.rename(folder, old)
        os.rename(partial, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    with open(os.path.join(folder, FILES)) as f:
        return len(json.load(f)["files"]), size


# --- the venv ----------------------------------------------------------------------------------

def ensure_venv(venv, requirements, pip_args, python):
    want = sha256_of(requirements)
    marker = os.path.join(venv, COMPLETE)
    try:
        with open(marker) as f:
            if f.read().strip() == want and os.path.exists(os.path.join(venv, "bin", "python")):
                emit("venv", status="present", dir=venv)
                return
    except OSError:
        pass
    emit("venv", status="building", dir=venv)
    shutil.rmtree(venv, ignore_errors=True)
    steps = [[python, "-m", "venv", venv],
             [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "-r", requirements] + list(pip_args)]
    for argv in steps:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=subprocess.PIPE)
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-1500:]
            raise Failure("creating the venv %s failed (%s exited with %d):\n%s" % (venv, argv[0], done.returncode, tail),
                          hint="check the instance can reach PyPI, or set python_env: to an env that already has "
                               "remote_payload/requirements.txt installed")
    with open(marker, "w") as f:
        f.write(want + "\n")
    emit("venv", status="built", dir=venv)


def check_env(python, cwd):
    done = subprocess.run([python, "-m", "remote_payload.envcheck"] + list(ENV_CHECK), cwd=cwd,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise Failure("the python env %s cannot run the payload: %s" % (python, done.stderr.decode(
            "utf-8", "replace").strip()[-400:]), hint="install remote_payload/requirements.txt into it, or remove "
                                                       "python_env: so that orch builds its own venv")
    emit("env", versions=json.loads(done.stdout.decode()))


# --- main --------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(prog="install.py")
    p.add_argument("--lock", required=True)
    p.add_argument("--holder", default="{}")
    p.add_argument("--item", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--venv")
    p.add_argument("--requirements")
    p.add_argument("--pip-arg", action="append", default=[])
    p.add_argument("--check-env")
    p.add_argument("--report-venv", metavar="DIR", help="say whether the venv DIR is complete (never build it)")
    p.add_argument("--cwd")
    args = p.parse_args(argv)
    items = [item.split("=", 1) for item in args.item]
    try:
        if any(len(item) != 2 or not item[1].startswith("/") for item in items):
            raise Failure("--item takes NAME=/absolute/dir", exit_code=2)
        with DeployLock(args.lock, json.loads(args.holder)):
            need = []
            for name, folder in items:
                wrong = problems(folder)
                if wrong and wrong != ["missing"]:
                    emit("broken", item=name, dir=folder, reason="; ".join(wrong[:5]))
                if wrong:
                    need.append((name, folder))
            emit("need", items=[name for name, _ in need])
            stdin = sys.stdin.buffer
            for name, folder in need:
                files, size = receive(folder, stdin)
                emit("installed", item=name, dir=folder, files=files, bytes=size)
            if args.venv:
                ensure_venv(args.venv, args.requirements, args.pip_arg, sys.executable)
            if args.report_venv:
                done = os.path.exists(os.path.join(args.report_venv, COMPLETE))
                emit("venv", status="present" if done else "missing", dir=args.report_venv)
            if args.check_env:
                check_env(args.check_env, args.cwd)
        emit("done")
        return 0
    except Failure as exc:
        emit("error", message=exc.message, hint=exc.hint, exit_code=exc.exit_code)
        return exc.exit_code
    except OSError as exc:
        where = exc.filename or "the work dir"
        hint = ("the login user cannot write there: fix the folder's owner, or point work_dir elsewhere"
                if exc.errno in (errno.EACCES, errno.EPERM) else None)
        emit("error", message="cannot install into %s: %s" % (where, exc.strerror or exc), hint=hint, exit_code=1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
