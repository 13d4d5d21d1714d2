"""Run one orch job detached from the SSH session, and answer questions about runs. Stdlib only.

Runs with the instance's system python3 (>= 3.6), from the deployed payload folder, before any venv exists:

    supervise.py start  --run-dir RUN --lock LOCK [--lock LOCK2 ...] [--nproc N] [--meta JSON] -- CMD...
                                                                            start detached; print JSON
    supervise.py status --runs-dir RUNS [--run ID] [--job JOB]              state of runs, as JSON
    supervise.py tail   --run-dir RUN [--offset N] [--follow] [--rank K]    log bytes + metrics, JSON lines
    supervise.py stop   --run-dir RUN [--grace S]                           TERM, then KILL after grace

`start` takes an exclusive flock on LOCK (one per GPU) and keeps it for the life of the run: a second
start on a busy GPU is refused, naming the run that holds it (run id, job, pid), and a crashed run can never
leave a stale lock (the kernel drops it with the process). The supervisor double-forks into its own session
(setsid) so it survives the controller's exit and network drops, writes `pid`, a `heartbeat` every few
seconds, the command's output to `log`, and `exit_code` when the command ends. What state a run is in is
decided by `runstate.py`, the one authority, for this file, the probe and the fetch alike.

A DDP run (`--nproc N`, one `--lock` per GPU) takes every lock in GPU order (two runs wanting overlapping
GPUs can never deadlock: both go for the lowest first) and runs `python -m MODULE ARGS` as
`python -m torch.distributed.run --standalone --nproc-per-node N -m MODULE ARGS` (torchrun) with the
command's python. Its exit code
is judged by the ranks' completion records (runstate.distributed_outcome), stop ends every rank (torchrun
starts each rank in its own session, so a forced stop kills them by the pids in RUN/ranks/K.json), and
`tail --rank K` reads rank K's own log.
"""

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time

if not __package__:  # run as a script from the payload folder: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from remote_payload import runstate  # noqa: E402
from remote_payload.runstate import State  # noqa: E402

HEARTBEAT_SECONDS = 5.0
HOLDER_WAIT_S = 5.0       # a busy lock whose holder file is being written: how long to wait for its name


def _write_atomic(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _log(line):
    sys.stdout.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
    sys.stdout.flush()


# --- the GPU lock --------------------------------------------------------------------------------

def _holder(lock_path):
    doc, _ = runstate.read_json(lock_path + ".holder", 1 << 16)
    return doc or {}


def _named_holder(lock_path, deadline):
    """Who holds the lock: the holder file, once it names a live supervisor (it is written just after the
    lock is taken, so a start racing the holder's own start waits a moment for it)."""
    holder = _holder(lock_path)
    while time.time() < deadline:
        pid = holder.get("pid")
        if isinstance(pid, int) and runstate.pid_alive(pid, holder.get("run_id")):
            return holder
        time.sleep(0.05)
        holder = _holder(lock_path)
    return holder


def _lock_order(path):
    digits = "".join(c for c in os.path.basename(path) if c.isdigit())
    return (int(digits) if digits else -1, path)


def take_gpu_locks(lock_paths):
    """({path: fd} for every lock, None) taken in GPU order, or ({}, the busy path) with none kept."""
    taken = {}
    for path in sorted(set(lock_paths), key=_lock_order):
        fd = take_gpu_lock(path)
        if fd is None:
            for other in taken.values():
                os.close(other)
            return {}, path
        taken[path] = fd
    return taken, None


def launcher(cmd, nproc):
    """`python -m MODULE ARGS` as torchrun with N processes on this node (a free rendezvous port each run)."""
    if nproc <= 1:
        return cmd
    if len(cmd) < 3 or cmd[1] != "-m":
        raise ValueError("--nproc needs a command of the form PYTHON -m MODULE ARGS, got %r" % (cmd[:3],))
    # torchrun itself, as `python -m torch.distributed.run`: the venv's bin/torchrun script would do the same,
    # but its #! names the folder the venv was built in, and a venv that was moved keeps the stale path
    head = [cmd[0], "-m", "torch.distributed.run"]
    return head + ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "-m", cmd[2]] + cmd[3:]


def take_gpu_lock(lock_path):
    """An fd holding the exclusive lock, or None when another run holds it."""
    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


# --- start -------------------------------------------------------------------------------------

def start(run_dir, lock_paths, meta, cmd, nproc=1):
    try:
        cmd = launcher(cmd, nproc)
    except ValueError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    locks, busy = take_gpu_locks(lock_paths)
    if busy is not None:
        holder = _named_holder(busy, time.time() + HOLDER_WAIT_S)
        print(json.dumps({"ok": False, "busy": True, "holder": holder, "lock": busy}))
        return 3
    os.makedirs(run_dir, exist_ok=True)     # only now: a refused start leaves no empty run folder behind
    # while the supervisor starts, the holder names the run; its pid follows as soon as it exists
    for lock_path in locks:
        _write_atomic(lock_path + ".holder", json.dumps({"run_id": meta.get("run_id"), "job": meta.get("job"),
                                                         "pid": None, "started_at": time.time()}))
    stale = [os.path.join(run_dir, "exit_code"), os.path.join(run_dir, "exit_code.tmp")]
    try:   # the ranks' completion records are per attempt
        stale += [os.path.join(run_dir, runstate.RANKS_DIR, n) for n in os.listdir(os.path.join(run_dir, runstate.RANKS_DIR))
                  if n.endswith(".json")]
    except OSError:
        pass
    for path in stale:
        try:
            os.unlink(path)
        except OSError:
            pass
    meta = dict(meta, nproc=nproc, locks=sorted(locks, key=_lock_order))
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:  # the caller: wait until the supervisor is up, then report
        os.close(ready_w)
        for fd in locks.values():
            os.close(fd)
        answer = os.read(ready_r, 4096).decode() or '{"ok": false, "error": "supervisor died at start"}'
        print(answer)
        return 0 if json.loads(answer).get("ok") else 1
    os.close(ready_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _supervise(run_dir, locks, meta, cmd, ready_w)
    os._exit(0)


def _supervise(run_dir, locks, meta, cmd, ready_w):
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_fd = os.open(os.path.join(run_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    pid = os.getpid()
    started = time.time()
    lock_paths = meta["locks"]
    info = dict(meta, pid=pid, started_at=started, cmd=cmd, lock=lock_paths[0])
    _write_atomic(os.path.join(run_dir, runstate.SUPERVISE_JSON), json.dumps(info, indent=1))
    _write_atomic(os.path.join(run_dir, runstate.PID), str(pid))
    for lock_path in lock_paths:
        _write_atomic(lock_path + ".holder", json.dumps({"run_id": meta.get("run_id"), "pid": pid,
                                                         "job": meta.get("job"), "started_at": started}))
    _log("[orch] run %s starting: %s" % (meta.get("run_id"), " ".join(cmd)))
    try:
        child = subprocess.Popen(cmd, cwd=meta.get("cwd") or None, stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, **(meta.get("env") or {})), start_new_session=True,
                                 pass_fds=tuple(locks.values()))  # the GPUs stay locked while the job lives
    except OSError as exc:
        os.write(ready_w, json.dumps({"ok": False, "error": "cannot start %s: %s" % (cmd[0], exc)}).encode())
        _finish(run_dir, lock_paths, 127, started)
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
    threading.Thread(target=_heartbeat, args=(run_dir, child), daemon=True).start()
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    if code < 0:
        _log("[orch] job killed by signal %d" % -code)
        code = 128 - code
    nproc = meta.get("nproc") or 1
    if nproc > 1 and not stopping.is_set():
        judged = runstate.distributed_outcome(run_dir, nproc, code)
        if judged != code:
            _log("[orch] torchrun exited %d, but the ranks' completion records say %s: recorded as %d"
                 % (code, "succeeded" if judged == 0 else "not succeeded", judged))
        code = judged
    _finish(run_dir, lock_paths, code, started, stopped=stopping.is_set())


def _finish(run_dir, lock_paths, code, started, stopped=False):
    _write_atomic(os.path.join(run_dir, runstate.EXIT_CODE), json.dumps(
        {"exit_code": code, "finished_at": time.time(), "seconds": round(time.time() - started, 1),
         "stopped": stopped}))
    _log("[orch] run finished with exit code %d%s" % (code, " (stopped)" if stopped else ""))
    _drop_holders(lock_paths)


def _drop_holders(lock_paths):
    for lock_path in lock_paths:
        try:
            os.unlink(lock_path + ".holder")
        except OSError:
            pass


def _heartbeat(run_dir, child):
    path = os.path.join(run_dir, runstate.HEARTBEAT)
    while child.poll() is None:
        _write_atomic(path, "%.3f" % time.time())
        time.sleep(HEARTBEAT_SECONDS)


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


# --- status ------------------------------------------------------------------------------------

def describe(run):
    """A run's state plus what `orch status` shows: last metrics, adapter, checkpoints, and from run.json the
    best evaluation, whether early stopping ended it, and the plan against what was measured."""
    run_dir = run["run_dir"]
    run.update(last_metrics=_last_line_json(os.path.join(run_dir, "metrics.jsonl")),
               has_adapter=os.path.exists(os.path.join(run_dir, "adapter", "manifest.json")),
               checkpoints=sorted(_checkpoints(run_dir)), ranks=runstate.read_ranks(run_dir))
    run.update(_run_results(run_dir))
    return run


def _run_results(run_dir):
    """{"best": {step, metric, value, checkpoint, restored} | None, "early_stopped": bool | None,
    "plan_check": run.json's plan_check | None, "parent": {run_id, job, source, adapter_sha256} | None (stage 2)};
    all None for a run.json that is missing or damaged (its state says why elsewhere)."""
    doc, _ = runstate.read_json(os.path.join(run_dir, runstate.RUN_JSON))
    doc = doc or {}
    best = doc.get("best") if isinstance(doc.get("best"), dict) else None
    training = doc.get("training") if isinstance(doc.get("training"), dict) else {}
    check = doc.get("plan_check") if isinstance(doc.get("plan_check"), dict) else None
    parent = doc.get("parent") if isinstance(doc.get("parent"), dict) else None
    return {"best": {k: best.get(k) for k in ("step", "metric", "value", "checkpoint", "restored")} if best else None,
            "early_stopped": training.get("early_stopped"), "plan_check": check,
            "parent": {k: parent.get(k) for k in ("run_id", "job", "source", "adapter_sha256")} if parent else None}


def _checkpoints(run_dir):
    try:
        names = os.listdir(os.path.join(run_dir, "checkpoints"))
    except OSError:
        return []
    return [int(n.split("-")[1]) for n in names if n.startswith("checkpoint-") and n.split("-")[1].isdigit()]


def _last_line_json(path):
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
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


def status(runs_dir, run_id, job):
    return {"runs": [describe(r) for r in runstate.list_runs(runs_dir, job=job, run_id=run_id)]}


# --- tail --------------------------------------------------------------------------------------

def tail(run_dir, offset, follow, poll=0.5, rank=0):
    """Stream the log (rank K > 0 of a DDP run: its own) from byte `offset` as JSON lines; with --follow, until
    the run ends."""
    log_path = os.path.join(run_dir, "log") if not rank else os.path.join(run_dir, runstate.RANKS_DIR, "%d.log" % rank)
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    metrics_offset = os.path.getsize(metrics_path) if follow and os.path.exists(metrics_path) else 0
    out = sys.stdout
    while True:
        offset = _emit_log(log_path, offset, out)
        metrics_offset = _emit_metrics(metrics_path, metrics_offset, out)
        state = runstate.read_run(run_dir)["state"]
        if not follow or state not in runstate.ACTIVE:
            offset = _emit_log(log_path, offset, out)
            _emit_metrics(metrics_path, metrics_offset, out)
            out.write(json.dumps({"end": describe(runstate.read_run(run_dir)), "offset": offset}) + "\n")
            out.flush()
            return 0
        out.write(json.dumps({"alive": state, "offset": offset}) + "\n")   # the controller's stall watch
        out.flush()
        time.sleep(poll)


def _emit_log(path, offset, out):
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


def _emit_metrics(path, offset, out):
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

def stop(run_dir, grace):
    run = runstate.read_run(run_dir)
    if run["state"] == State.UNKNOWN.value:
        return {"ok": False, "error": "the state of run %s is unknown: %s" % (run["run_id"], run["reason"]),
                "run": describe(run)}
    if run["state"] not in runstate.ACTIVE or run["pid"] is None:
        return {"ok": True, "already": run["state"], "run": describe(run)}
    pid = run["pid"]
    child = runstate.read_pid_file(os.path.join(run_dir, "child_pid"))
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and runstate.pid_alive(pid, run["run_id"]):
        time.sleep(0.2)
    forced = False
    if runstate.pid_alive(pid, run["run_id"]):
        forced = True
        if child:
            _signal_group(child, signal.SIGKILL)
        _kill_ranks(run_dir, run["run_id"])
        time.sleep(0.5)
        if runstate.pid_alive(pid, run["run_id"]):
            os.kill(pid, signal.SIGKILL)
    if forced and not os.path.exists(os.path.join(run_dir, runstate.EXIT_CODE)):
        _write_atomic(os.path.join(run_dir, runstate.EXIT_CODE), json.dumps(
            {"exit_code": 137, "finished_at": time.time(), "stopped": True, "forced": True}))
        meta = run["meta"]
        _drop_holders(meta.get("locks") or ([meta["lock"]] if meta.get("lock") else []))
    for _ in range(50):
        if not runstate.pid_alive(pid, run["run_id"]) and not _live_ranks(run_dir, run["run_id"]):
            break
        time.sleep(0.1)
    if _live_ranks(run_dir, run["run_id"]):
        _kill_ranks(run_dir, run["run_id"])
    return {"ok": True, "forced": forced, "run": describe(runstate.read_run(run_dir))}


def _live_ranks(run_dir, run_id):
    return [r["pid"] for r in runstate.read_ranks(run_dir) if isinstance(r.get("pid"), int)
            and runstate.pid_alive(r["pid"], run_id)]


def _kill_ranks(run_dir, run_id):
    """torchrun starts every rank in a session of its own: a forced stop kills them one by one."""
    for rank_pid in _live_ranks(run_dir, run_id):
        _signal_group(rank_pid, signal.SIGKILL)
        try:
            os.kill(rank_pid, signal.SIGKILL)
        except OSError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="supervise.py")
    sub = parser.add_subparsers(dest="action")
    sub.required = True
    p = sub.add_parser("start")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--lock", required=True, action="append", help="a GPU's lock; once per GPU of the run")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) of a torchrun DDP run")
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
    p.add_argument("--rank", type=int, default=0)
    p = sub.add_parser("stop")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--grace", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.action == "start":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("start needs a command after --")
        return start(os.path.abspath(args.run_dir), [os.path.abspath(p) for p in args.lock], json.loads(args.meta),
                     cmd, args.nproc)
    if args.action == "status":
        print(json.dumps(status(args.runs_dir, args.run, args.job)))
        return 0
    if args.action == "tail":
        return tail(args.run_dir, args.offset, args.follow, rank=args.rank)
    result = stop(args.run_dir, args.grace)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
