"""Is a run alive, finished, failed, stopped, lost -- or unknown? The one place that decides. Stdlib only,
Python >= 3.6 syntax: it runs with the instance's system python3, inside the supervisor, the probe and the
fetch inspection alike.

A run folder (`work_dir/runs/<run id>/`) holds what `supervise.py` writes: `supervise.json` (at start),
`pid` (the supervisor's pid), `heartbeat` (a time, every few seconds), `exit_code` (a JSON object, when the
job ends); and what the payload writes: `run.json` with `status` one of `Status`. The rules:

    exit_code present          FINISHED (code 0), STOPPED (stopped by `orch stop`), FAILED (any other code)
    pid alive                  RUNNING   (alive = the process exists, is not a zombie, and its command line
                                          names this run: a pid reused after a crash does not count)
    pid present, not alive     LOST      (machine crash, OOM killer, kill -9: never "running")
    no pid yet                 STARTING
    a file that cannot be read UNKNOWN, with the reason: one garbage file never breaks the other runs, and
                               a run in an unknown state counts as possibly active (preflight, GPU checks)
"""

import enum
import json
import os
import time


class State(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    UNKNOWN = "unknown"


class Status(str, enum.Enum):
    """What the payload writes in run.json (remote_payload/runrecord.py)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"          # an attempt found still "running" when the next one started


ACTIVE = (State.STARTING, State.RUNNING)
POSSIBLY_ACTIVE = ACTIVE + (State.UNKNOWN,)
ENDED = (State.FINISHED, State.FAILED, State.STOPPED, State.LOST)

SUPERVISE_JSON, PID, HEARTBEAT, EXIT_CODE, RUN_JSON = "supervise.json", "pid", "heartbeat", "exit_code", "run.json"


class Unreadable(Exception):
    """A state file exists but holds something else than what the supervisor writes."""


def _text(path, limit=4096):
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable("%s cannot be read (%s)" % (os.path.basename(path), exc.strerror or exc))
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Unreadable("%s holds binary data" % os.path.basename(path))


def _shown(text):
    return repr(text if len(text) <= 40 else text[:40] + "...")


def read_pid(run_dir):
    """The supervisor's pid, None when not written yet; Unreadable when the file holds no positive integer."""
    text = _text(os.path.join(run_dir, PID))
    if not text:          # not written yet (the supervisor writes it atomically, so never half)
        return None
    if not text.isdigit() or int(text) <= 0:
        raise Unreadable("pid holds %s, not a process id" % _shown(text))
    return int(text)


def read_pid_file(path):
    """A pid from any pid file, or None when it is missing or does not hold one (never raises)."""
    try:
        text = _text(path)
    except Unreadable:
        return None
    return int(text) if text and text.isdigit() and int(text) > 0 else None


def read_heartbeat(run_dir):
    text = _text(os.path.join(run_dir, HEARTBEAT))
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Unreadable("heartbeat holds %s, not a time" % _shown(text))
    if value != value or value <= 0:  # NaN or nonsense
        raise Unreadable("heartbeat holds %s, not a time" % _shown(text))
    return value


def read_exit(run_dir):
    """{"exit_code": int, "stopped": bool, ...} or None while the job runs."""
    text = _text(os.path.join(run_dir, EXIT_CODE))
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("exit_code"), int) or isinstance(doc["exit_code"], bool):
        raise Unreadable("exit_code holds %s, not the supervisor's {\"exit_code\": N, ...}" % _shown(text))
    return doc


def read_json(path, limit=16 << 20):
    """A JSON object from a file: (doc, None), (None, "missing") or (None, the reason it cannot be used)."""
    try:
        text = _text(path, limit)
    except Unreadable as exc:
        return None, str(exc)
    if text is None:
        return None, "missing"
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return None, "not valid JSON (%s)" % exc
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    return doc, None


def pid_alive(pid, marker=None):
    """True when `pid` runs (not a zombie) and, when `marker` is given, its command line contains it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        if marker:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return marker.encode() in f.read()
    except (OSError, IndexError):
        pass  # no /proc (not Linux): trust kill(0)
    return True


def read_run(run_dir, now=None):
    """The state of one run folder, as a JSON-ready dict. Never raises for what is in the folder."""
    now = time.time() if now is None else now
    run_id = os.path.basename(os.path.normpath(run_dir))
    out = {"run_id": run_id, "run_dir": run_dir, "job": None, "state": State.UNKNOWN.value, "reason": None,
           "pid": None, "alive": False, "exit_code": None, "stopped": False, "started_at": None,
           "finished_at": None, "heartbeat_age_s": None, "payload_status": None, "meta": {}}
    info, why = read_json(os.path.join(run_dir, SUPERVISE_JSON), 1 << 20)
    if info is None:
        out["reason"] = "supervise.json is %s" % why
        return out
    out["job"], out["started_at"] = info.get("job"), info.get("started_at")
    out["run_id"] = info.get("run_id") or run_id
    out["meta"] = {k: info.get(k) for k in ("payload", "bundle", "job_dir", "python", "model_dir", "gpu", "gpus",
                                             "resumes", "lock", "locks", "nproc", "cwd", "sweep", "point",
                                             "params", "parent") if k in info}
    run_json, _ = read_json(os.path.join(run_dir, RUN_JSON))
    if run_json is not None:
        out["payload_status"] = run_json.get("status")
    try:
        pid = read_pid(run_dir)
        beat = read_heartbeat(run_dir)
        done = read_exit(run_dir)
    except Unreadable as exc:
        out["reason"] = str(exc)
        return out
    out["pid"] = pid
    out["heartbeat_age_s"] = None if beat is None else round(now - beat, 1)
    if done is not None:
        code = done["exit_code"]
        out.update(exit_code=code, stopped=bool(done.get("stopped")), finished_at=done.get("finished_at"))
        state = State.FINISHED if code == 0 else State.STOPPED if done.get("stopped") else State.FAILED
    elif pid is None:
        state = State.STARTING
    else:
        out["alive"] = pid_alive(pid, out["run_id"])
        state = State.RUNNING if out["alive"] else State.LOST
    if done is not None and pid is not None:
        out["alive"] = pid_alive(pid, out["run_id"])
    out["state"] = state.value
    return out


# --- the ranks of a DDP run (remote_payload/distributed.py writes RUN/ranks/K.json) -------------------

RANKS_DIR = "ranks"


def read_ranks(run_dir, now=None):
    """[{rank, pid, alive, status, step, heartbeat_age_s, weights_sha256, error}] for every RUN/ranks/K.json."""
    now = time.time() if now is None else now
    folder = os.path.join(run_dir, RANKS_DIR)
    try:
        names = sorted((n for n in os.listdir(folder) if n.endswith(".json") and n[:-5].isdigit()),
                       key=lambda n: int(n[:-5]))
    except OSError:
        return []
    out = []
    for name in names:
        doc, why = read_json(os.path.join(folder, name), 1 << 16)
        if doc is None:
            out.append({"rank": int(name[:-5]), "status": "unknown", "error": "%s is %s" % (name, why)})
            continue
        pid, beat = doc.get("pid"), doc.get("heartbeat")
        out.append({"rank": doc.get("rank"), "pid": pid, "status": doc.get("status"), "step": doc.get("step"),
                    "alive": isinstance(pid, int) and pid_alive(pid, os.path.basename(os.path.normpath(run_dir))),
                    "heartbeat_age_s": round(now - beat, 1) if isinstance(beat, (int, float)) else None,
                    "weights_sha256": doc.get("weights_sha256"), "error": doc.get("error")})
    return out


def distributed_outcome(run_dir, nproc, launcher_code):
    """The exit code a DDP run is recorded with: 0 when every rank's completion record (written this attempt)
    and run.json say succeeded -- whatever torchrun's own code (a rank can abort at interpreter exit after its
    results are written) -- else the launcher's code, and 1 when the launcher said 0 without those records."""
    ranks = {r.get("rank"): r.get("status") for r in read_ranks(run_dir)}
    run_json, _ = read_json(os.path.join(run_dir, RUN_JSON))
    complete = (all(ranks.get(k) == Status.SUCCEEDED.value for k in range(nproc))
                and (run_json or {}).get("status") == Status.SUCCEEDED.value)
    if complete:
        return 0
    return launcher_code or 1


def list_runs(runs_dir, job=None, run_id=None):
    """Every run folder under `runs_dir` (those with a supervise.json, or damaged ones that have a pid),
    oldest first; one run's garbage never hides another."""
    try:
        names = sorted(os.listdir(runs_dir))
    except OSError:
        return []
    runs = []
    for name in names:
        if run_id and name != run_id:
            continue
        path = os.path.join(runs_dir, name)
        if not os.path.isdir(path) or not (os.path.exists(os.path.join(path, SUPERVISE_JSON))
                                           or os.path.exists(os.path.join(path, PID))):
            continue
        state = read_run(path)
        if job and state.get("job") != job:
            continue
        runs.append(state)
    runs.sort(key=lambda r: (r.get("started_at") if isinstance(r.get("started_at"), (int, float)) else 0, r["run_id"]))
    return runs
