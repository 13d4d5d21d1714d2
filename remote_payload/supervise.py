"""Run one orch job detached from the SSH session, and answer questions about runs. Stdlib only.

Runs with the instance's system python3 (>= 3.8), before any venv exists.

    supervise.py start  --run-dir RUN --lock LOCK [--meta JSON] -- CMD...   start detached; print JSON
    supervise.py status --runs-dir RUNS [--run ID] [--job JOB]              state of runs, as JSON
    supervise.py tail   --run-dir RUN [--offset N] [--follow]               log bytes + metrics, JSON lines
    supervise.py stop   --run-dir RUN [--grace S]                           TERM, then KILL after grace

`start` takes an exclusive flock on LOCK (one per GPU) and keeps it for the life of the run: a second
start on a busy GPU is refused, naming the run that holds it, and a crashed run can never leave a
stale lock (the kernel drops it with the process). The supervisor double-forks into its own session
(setsid) so it survives the controller's exit and network drops, writes `pid`, a `heartbeat` every
few seconds, the command's output to `log`, and `exit_code` when the command ends. A dead pid
without an exit code is a *lost* run (machine crash, OOM killer, kill -9), never "running".
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time

HEARTBEAT_SECONDS = 5.0


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: str, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _read_json(path: str, default=None):
    text = _read(path)
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _pid_alive(pid: int) -> bool:
    """True when `pid` is a live supervisor (guards against pid reuse by checking its command line)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        return b"supervise.py" in cmdline
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)


# --- start -------------------------------------------------------------------------------------

def start(run_dir: str, lock_path: str, meta: dict, cmd: list) -> int:
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_json(lock_path + ".holder", {}) or {}
        print(json.dumps({"ok": False, "busy": True, "holder": holder, "lock": lock_path}))
        return 3
    for name in ("exit_code", "exit_code.tmp"):
        try:
            os.unlink(os.path.join(run_dir, name))
        except OSError:
            pass
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:  # the caller: wait until the supervisor is up, then report
        os.close(ready_w)
        os.close(lock_fd)
        answer = os.read(ready_r, 4096).decode() or '{"ok": false, "error": "supervisor died at start"}'
        print(answer)
        return 0 if json.loads(answer).get("ok") else 1
    os.close(ready_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _supervise(run_dir, lock_path, lock_fd, meta, cmd, ready_w)
    os._exit(0)


def _supervise(run_dir, lock_path, lock_fd, meta, cmd, ready_w) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_fd = os.open(os.path.join(run_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    pid = os.getpid()
    started = time.time()
    info = dict(meta, pid=pid, started_at=started, cmd=cmd, lock=lock_path)
    _write_atomic(os.path.join(run_dir, "supervise.json"), json.dumps(info, indent=1))
    _write_atomic(os.path.join(run_dir, "pid"), str(pid))
    _write_atomic(lock_path + ".holder", json.dumps({"run_id": meta.get("run_id"), "pid": pid,
                                                    "job": meta.get("job"), "started_at": started}))
    _log("[orch] run %s starting: %s" % (meta.get("run_id"), " ".join(cmd)))
    try:
        child = subprocess.Popen(cmd, cwd=meta.get("cwd") or None, stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, **(meta.get("env") or {})), start_new_session=True,
                                 pass_fds=(lock_fd,))  # the GPU stays locked while the job itself lives
    except OSError as exc:
        os.write(ready_w, json.dumps({"ok": False, "error": "cannot start %s: %s" % (cmd[0], exc)}).encode())
        _finish(run_dir, lock_path, 127, started)
        return
    _write_atomic(os.path.join(run_dir, "child_pid"), str(child.pid))
    os.write(ready_w, json.dumps({"ok": True, "pid": pid, "child_pid": child.pid, "run_dir": run_dir}).encode())
    os.close(ready_w)
    stopping = threading.Event()

    def on_term(signum, frame):
        stopping.set()
        _log("[orch] stop requested (signal %d): stopping the job" % signum)
        _signal_group(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    beat = threading.Thread(target=_heartbeat, args=(run_dir, child), daemon=True)
    beat.start()
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    if code < 0:
        _log("[orch] job killed by signal %d" % -code)
        code = 128 - code
    _finish(run_dir, lock_path, code, started, stopped=stopping.is_set())


def _finish(run_dir, lock_path, code, started, stopped=False) -> None:
    _write_atomic(os.path.join(run_dir, "exit_code"), json.dumps(
        {"exit_code": code, "finished_at": time.time(), "seconds": round(time.time() - started, 1),
         "stopped": stopped}))
    _log("[orch] run finished with exit code %d%s" % (code, " (stopped)" if stopped else ""))
    try:
        os.unlink(lock_path + ".holder")
    except OSError:
        pass


def _heartbeat(run_dir, child) -> None:
    path = os.path.join(run_dir, "heartbeat")
    while child.poll() is None:
        _write_atomic(path, "%.3f" % time.time())
        time.sleep(HEARTBEAT_SECONDS)


def _signal_group(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _log(line: str) -> None:
    sys.stdout.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
    sys.stdout.flush()


# --- status ------------------------------------------------------------------------------------

def run_state(run_dir: str) -> dict:
    info = _read_json(os.path.join(run_dir, "supervise.json"), {}) or {}
    done = _read_json(os.path.join(run_dir, "exit_code"))
    pid = int(_read(os.path.join(run_dir, "pid"), "0") or 0)
    heartbeat = _read(os.path.join(run_dir, "heartbeat"))
    alive = bool(pid) and _pid_alive(pid)
    if done is not None:
        code = done.get("exit_code")
        state = "finished" if code == 0 else ("stopped" if done.get("stopped") else "failed")
    elif alive:
        state = "running"
    elif pid:
        state = "lost"
    else:
        state = "starting"
    run = _read_json(os.path.join(run_dir, "run.json"), {}) or {}
    return {
        "run_id": info.get("run_id") or os.path.basename(run_dir.rstrip("/")),
        "job": info.get("job"), "state": state, "pid": pid or None, "alive": alive,
        "exit_code": None if done is None else done.get("exit_code"),
        "started_at": info.get("started_at"), "finished_at": None if done is None else done.get("finished_at"),
        "heartbeat_age_s": None if not heartbeat else round(time.time() - float(heartbeat), 1),
        "last_metrics": _last_line_json(os.path.join(run_dir, "metrics.jsonl")),
        "payload_status": run.get("status"), "run_dir": run_dir,
        "has_adapter": os.path.exists(os.path.join(run_dir, "adapter", "manifest.json")),
        "checkpoints": sorted(_checkpoints(run_dir)),
        "meta": {k: info.get(k) for k in ("bundle", "python", "model_dir", "gpu", "resumes") if k in info},
    }


def _checkpoints(run_dir: str) -> list:
    try:
        names = os.listdir(os.path.join(run_dir, "checkpoints"))
    except OSError:
        return []
    return [int(n.split("-")[1]) for n in names if n.startswith("checkpoint-") and n.split("-")[1].isdigit()]


def _last_line_json(path: str):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def status(runs_dir: str, run_id, job) -> dict:
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError:
        names = []
    runs = []
    for name in names:
        if run_id and name != run_id:
            continue
        path = os.path.join(runs_dir, name)
        if not os.path.isfile(os.path.join(path, "supervise.json")):
            continue
        state = run_state(path)
        if job and state.get("job") != job:
            continue
        runs.append(state)
    runs.sort(key=lambda r: r.get("started_at") or 0)
    return {"runs": runs}


# --- tail --------------------------------------------------------------------------------------

def tail(run_dir: str, offset: int, follow: bool, poll: float = 0.5) -> int:
    """Stream the log from byte `offset` as JSON lines; with --follow, until the run ends."""
    log_path = os.path.join(run_dir, "log")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    metrics_offset = os.path.getsize(metrics_path) if follow and os.path.exists(metrics_path) else 0
    out = sys.stdout
    while True:
        offset = _emit_log(log_path, offset, out)
        metrics_offset = _emit_metrics(metrics_path, metrics_offset, out)
        state = run_state(run_dir)["state"]
        if not follow or state not in ("running", "starting"):
            offset = _emit_log(log_path, offset, out)
            _emit_metrics(metrics_path, metrics_offset, out)
            out.write(json.dumps({"end": run_state(run_dir), "offset": offset}) + "\n")
            out.flush()
            return 0
        time.sleep(poll)


def _emit_log(path: str, offset: int, out) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                # only whole lines, so a re-attach by offset never splits or repeats one
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    if len(chunk) < 65536:
                        break
                    cut = len(chunk)
                text = chunk[:cut].decode("utf-8", "replace")
                offset += cut
                out.write(json.dumps({"log": text, "offset": offset}) + "\n")
                f.seek(offset)
    except OSError:
        pass
    out.flush()
    return offset


def _emit_metrics(path: str, offset: int, out) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    cut = data.rfind(b"\n") + 1
    for line in data[:cut].splitlines():
        try:
            out.write(json.dumps({"metric": json.loads(line)}) + "\n")
        except ValueError:
            continue
    out.flush()
    return offset + cut


# --- stop --------------------------------------------------------------------------------------

def stop(run_dir: str, grace: float) -> dict:
    state = run_state(run_dir)
    if state["state"] not in ("running", "starting"):
        return {"ok": True, "already": state["state"], "run": state}
    pid = state["pid"]
    child = int(_read(os.path.join(run_dir, "child_pid"), "0") or 0)
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    forced = False
    if _pid_alive(pid):
        forced = True
        if child:
            _signal_group(child, signal.SIGKILL)
        time.sleep(0.5)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    if forced and not os.path.exists(os.path.join(run_dir, "exit_code")):
        _write_atomic(os.path.join(run_dir, "exit_code"), json.dumps(
            {"exit_code": 137, "finished_at": time.time(), "stopped": True, "forced": True}))
        lock = (_read_json(os.path.join(run_dir, "supervise.json"), {}) or {}).get("lock")
        if lock:
            try:
                os.unlink(lock + ".holder")
            except OSError:
                pass
    for _ in range(50):
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    return {"ok": True, "forced": forced, "run": run_state(run_dir)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="supervise.py")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("start")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--lock", required=True)
    p.add_argument("--meta", default="{}")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("status")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--run")
    p.add_argument("--job")
    p = sub.add_parser("tail")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--follow", action="store_true")
    p = sub.add_parser("stop")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--grace", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.action == "start":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("start needs a command after --")
        return start(os.path.abspath(args.run_dir), os.path.abspath(args.lock), json.loads(args.meta), cmd)
    if args.action == "status":
        print(json.dumps(status(args.runs_dir, args.run, args.job)))
        return 0
    if args.action == "tail":
        return tail(args.run_dir, args.offset, args.follow)
    print(json.dumps(stop(args.run_dir, args.grace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
