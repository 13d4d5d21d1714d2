"""What `orch preflight` learns about an instance, in one round trip. Stdlib only, Python >= 3.6 syntax.

Runs with the system python3 before any venv exists. The controller sends this file on stdin and its
parameters as one JSON argument, so nothing needs to be on the instance first:

    python3 - '{"paths": {"models_dir": "/home/ubuntu/models", ...}, "imds_url": null}' < probe.py

(`python3 remote_payload/probe.py` with the JSON on stdin works too.) It prints one JSON document on
stdout and always exits 0: every section records its own error instead of crashing the whole probe,
so the controller can say exactly which part of the box is wrong.

Parameters (all optional):
    paths          {"models_dir": DIR, "work_dir": DIR, "tmp": "/tmp"}: free/total disk of each
                   (a path that does not exist yet is measured at its nearest existing parent)
    sizes          {"weights": DIR}: bytes already present under each directory
    work_dir       where `runs/*/` are looked up for an orch run already (or possibly) active
    runstate_source  the source of remote_payload/runstate.py (the probe runs before anything is deployed)
    imds_url       base URL of the EC2 instance metadata service (IMDSv2); null: do not ask
    imds_timeout   seconds, for each IMDS request (default 0.3)
    gpu_timeout    seconds, for nvidia-smi (default 20)

Output (every section present; a failed one carries its error instead of raising):
    hostname, host {load, cpus, mem_*}, python {version, executable},
    ec2 {instance_id, instance_type, error, url},
    disk {label: {path, exists, measured_at, free_bytes, total_bytes, device, note, error, writable}},
    sizes {label: {path, exists, bytes, files, error}},
    nvidia_smi {status: ok|missing|error, path, error, driver_version, cuda_version},
    gpus [{index, name, uuid, memory_total_mib, memory_used_mib, driver_version, cuda_version}],
    gpu_processes [{pid, name, used_mib, gpu_uuid, gpu_index}],
    runs {runs_dir, active [{run_id, job, pid, state, reason, heartbeat_age_s, run_dir}], error},
    errors {}, elapsed_ms
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

PROBE_VERSION = 1

# The exact nvidia-smi invocations; tests/fixtures/sshd.py replays recorded output for these.
QUERY_GPU = ["--query-gpu=index,name,uuid,memory.total,memory.used,driver_version",
             "--format=csv,noheader,nounits"]
QUERY_APPS = ["--query-compute-apps=pid,process_name,used_memory,gpu_uuid",
              "--format=csv,noheader,nounits"]
SUMMARY = []  # plain `nvidia-smi`: the header carries the CUDA version


def _error(exc):
    text = str(exc).strip() or type(exc).__name__
    return "%s: %s" % (type(exc).__name__, text) if not isinstance(exc, RuntimeError) else text


def _which(name):
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


# ---------------------------------------------------------------- nvidia-smi (started first, runs meanwhile)

def start_nvidia_smi():
    """Start the three nvidia-smi queries in parallel; a slow driver then costs one wait, not three."""
    exe = _which("nvidia-smi")
    if exe is None:
        return {"exe": None, "procs": {}}
    procs = {}
    for key, args in (("gpus", QUERY_GPU), ("apps", QUERY_APPS), ("summary", SUMMARY)):
        try:
            procs[key] = subprocess.Popen([exe] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE)
        except OSError as exc:
            procs[key] = exc
    return {"exe": exe, "procs": procs}


def _int_or_none(text):
    text = text.strip()
    try:
        return int(float(text))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]" (MIG, vGPU)


def finish_nvidia_smi(started, timeout):
    out = {"status": "missing", "path": None, "error": None, "driver_version": None, "cuda_version": None,
           "gpus": [], "processes": []}
    if started["exe"] is None:
        out["error"] = "nvidia-smi is not on PATH (%s)" % os.environ.get("PATH", "")
        return out
    out["path"] = started["exe"]
    deadline = time.time() + timeout
    texts = {}
    for key, proc in started["procs"].items():
        if isinstance(proc, Exception):
            out["status"], out["error"] = "error", _error(proc)
            return out
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for other in started["procs"].values():
                if not isinstance(other, Exception) and other.poll() is None:
                    other.kill()
            out["status"], out["error"] = "error", "nvidia-smi did not answer in %ss" % timeout
            return out
        text = stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            # nvidia-smi prints its failures ("couldn't communicate with the NVIDIA driver") on stdout
            message = (text + "\n" + stderr.decode("utf-8", "replace")).strip()
            out["status"] = "error"
            out["error"] = "nvidia-smi exited with %d: %s" % (proc.returncode, message[-800:] or "(no output)")
            return out
        texts[key] = text
    out["status"] = "ok"
    index_of = {}
    for line in texts["gpus"].splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6:
            continue
        index = _int_or_none(parts[0])
        gpu = {"index": index, "name": ", ".join(parts[1:-4]), "uuid": parts[-4],
               "memory_total_mib": _int_or_none(parts[-3]), "memory_used_mib": _int_or_none(parts[-2]),
               "driver_version": parts[-1]}
        out["gpus"].append(gpu)
        index_of[gpu["uuid"]] = index
        out["driver_version"] = out["driver_version"] or gpu["driver_version"]
    for line in texts["apps"].splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or _int_or_none(parts[0]) is None:
            continue  # "No running processes found" on some versions
        out["processes"].append({"pid": _int_or_none(parts[0]), "name": ", ".join(parts[1:-2]),
                                 "used_mib": _int_or_none(parts[-2]), "gpu_uuid": parts[-1],
                                 "gpu_index": index_of.get(parts[-1])})
    match = re.search(r"CUDA Version:\s*([0-9.]+|N/A)", texts["summary"])
    if match and match.group(1) != "N/A":
        out["cuda_version"] = match.group(1)
    for gpu in out["gpus"]:
        gpu["cuda_version"] = out["cuda_version"]
    return out


# ---------------------------------------------------------------- EC2 identity over IMDSv2

def imds(base_url, timeout):
    out = {"instance_id": None, "instance_type": None, "error": None, "url": base_url}
    if not base_url:
        out["error"] = "not asked (imds_url is off for this instance)"
        return out
    try:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise RuntimeError("imds_url must be http://HOST[:PORT], got %r" % base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        prefix = parts.path.rstrip("/")

        def request(method, path, headers):
            conn.request(method, prefix + path, headers=headers)
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
            if response.status != 200:
                raise RuntimeError("IMDS %s %s answered HTTP %d" % (method, path, response.status))
            return body

        try:
            token = request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
            auth = {"X-aws-ec2-metadata-token": token}
            out["instance_id"] = request("GET", "/latest/meta-data/instance-id", auth)
            out["instance_type"] = request("GET", "/latest/meta-data/instance-type", auth)
        finally:
            conn.close()
    except socket.timeout:
        out["error"] = "no answer from %s in %ss (not EC2, or the IMDS hop limit is too low)" % (base_url, timeout)
    except (OSError, RuntimeError, ValueError) as exc:
        out["error"] = "cannot read instance metadata from %s: %s" % (base_url, _error(exc))
    except Exception as exc:  # http.client raises a few of its own
        out["error"] = "cannot read instance metadata from %s: %s" % (base_url, _error(exc))
    return out


# ---------------------------------------------------------------- disk, sizes, runs, host

def disk(path):
    out = {"path": path, "exists": False, "measured_at": None, "free_bytes": None, "total_bytes": None,
           "device": None, "note": None, "error": None, "writable": None}
    try:
        target = os.path.abspath(os.path.expanduser(path))
        out["exists"] = os.path.exists(target)
        probe = target
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if probe != target:
            out["note"] = "%s does not exist yet; measured its nearest existing parent %s" % (target, probe)
        st = os.statvfs(probe)
        out["measured_at"] = probe
        out["writable"] = os.access(probe, os.W_OK | os.X_OK)
        out["free_bytes"] = st.f_bavail * st.f_frsize
        out["total_bytes"] = st.f_blocks * st.f_frsize
        out["device"] = os.stat(probe).st_dev
    except Exception as exc:
        out["error"] = _error(exc)
    return out


def tree_size(path, limit_s=3.0):
    out = {"path": path, "exists": os.path.isdir(path), "bytes": 0, "files": 0, "error": None}
    deadline = time.time() + limit_s
    try:
        for root, _dirs, files in os.walk(path):
            for name in files:
                try:
                    out["bytes"] += os.lstat(os.path.join(root, name)).st_size
                    out["files"] += 1
                except OSError:
                    pass
            if time.time() > deadline:
                out["error"] = "stopped counting after %ss" % limit_s
                break
    except Exception as exc:
        out["error"] = _error(exc)
    return out


def load_runstate(params):
    """remote_payload/runstate.py, the one authority on run states: imported when the probe runs from a
    payload folder, else built from the source the controller sends in the parameters (preflight runs
    before anything is deployed: nothing is written to a box until it is known to be the right one)."""
    try:
        from remote_payload import runstate
        return runstate
    except ImportError:
        pass
    source = params.get("runstate_source")
    if not source:
        raise RuntimeError("the parameters carry no runstate_source")
    import types
    module = types.ModuleType("runstate")
    exec(compile(source, "remote_payload/runstate.py", "exec"), module.__dict__)
    return module


def active_runs(work_dir, runstate):
    """Runs under work_dir/runs/ that are (or may be) active: running, starting, or in an unknown state."""
    out = {"runs_dir": None, "active": [], "error": None}
    if not work_dir:
        return out
    runs = os.path.join(work_dir, "runs")
    out["runs_dir"] = runs
    if not os.path.isdir(runs):
        return out
    try:
        os.listdir(runs)
    except Exception as exc:
        out["error"] = _error(exc)
        return out
    possibly = set(s.value for s in runstate.POSSIBLY_ACTIVE)
    for run in runstate.list_runs(runs):
        if run["state"] in possibly:
            out["active"].append({k: run.get(k) for k in ("run_id", "job", "pid", "state", "reason",
                                                          "heartbeat_age_s", "run_dir")})
    return out


def host_facts():
    out = {"hostname": socket.gethostname(), "load": None, "cpus": os.cpu_count(), "mem_total_bytes": None,
           "mem_available_bytes": None, "user": None}
    try:
        import pwd
        out["user"] = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        pass
    try:
        out["load"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    value = int(rest.split()[0]) * 1024
                    out["mem_total_bytes" if key == "MemTotal" else "mem_available_bytes"] = value
    except (OSError, ValueError, IndexError):
        pass
    return out


# ---------------------------------------------------------------- main

def _section(doc, name, fn, *args):
    try:
        doc[name] = fn(*args)
    except Exception as exc:  # a section never takes the probe down
        doc[name] = None
        doc["errors"][name] = _error(exc)


def probe(params):
    started_at = time.time()
    doc = {"probe_version": PROBE_VERSION, "errors": {},
           "python": {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}}
    gpu_started = {"exe": None, "procs": {}}
    try:
        gpu_started = start_nvidia_smi()
    except Exception as exc:
        doc["errors"]["nvidia_smi"] = _error(exc)
    _section(doc, "host", host_facts)
    doc["hostname"] = (doc.get("host") or {}).get("hostname")
    _section(doc, "ec2", imds, params.get("imds_url"), float(params.get("imds_timeout") or 0.3))
    paths = params.get("paths") or {}
    doc["disk"] = {}
    for label in sorted(paths):
        try:
            doc["disk"][label] = disk(paths[label])
        except Exception as exc:
            doc["disk"][label] = {"path": paths[label], "error": _error(exc)}
    doc["sizes"] = {}
    for label, path in sorted((params.get("sizes") or {}).items()):
        doc["sizes"][label] = tree_size(path)
    try:
        runstate = load_runstate(params)
    except Exception as exc:
        doc["runs"] = {"runs_dir": None, "active": [], "error": "cannot judge run states: %s" % _error(exc)}
    else:
        _section(doc, "runs", active_runs, params.get("work_dir") or paths.get("work_dir"), runstate)
    try:
        smi = finish_nvidia_smi(gpu_started, float(params.get("gpu_timeout") or 20))
    except Exception as exc:
        smi = {"status": "error", "error": _error(exc), "gpus": [], "processes": []}
    doc["gpus"] = smi.pop("gpus")
    doc["gpu_processes"] = smi.pop("processes")
    doc["nvidia_smi"] = smi
    doc["elapsed_ms"] = round((time.time() - started_at) * 1000, 1)
    return doc


def main(argv):
    try:
        if len(argv) > 1:
            params = json.loads(argv[1])
        else:
            params = json.loads(sys.stdin.read() or "{}")
        if not isinstance(params, dict):
            raise ValueError("parameters must be a JSON object")
    except ValueError as exc:
        doc = {"probe_version": PROBE_VERSION, "errors": {"params": "bad parameters: %s" % exc}}
    else:
        doc = probe(params)
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
