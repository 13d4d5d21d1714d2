"""What `orch fetch-adapter` needs to know about a run folder before any byte of the adapter moves, as one
JSON document. Stdlib only (Python >= 3.6), run from the deployed payload folder:

    inspect_run.py RUN_DIR

{"run_dir", "exists", "state": runstate's verdict (state, reason, exit_code, stopped, alive, payload_status),
 "run", "run_error" (run.json), "manifest", "manifest_error" (adapter/manifest.json),
 "adapter_dir", "adapter_files" {relative path: size}, "adapter_odd" [links, devices], "extras" {name: size}
 -- run.json, metrics.jsonl, eval.json and every regular file under tensorboard/ as "tensorboard/<path>"}
"""

import json
import os
import stat
import sys

if not __package__:  # run as a script from the payload folder: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from remote_payload import runstate  # noqa: E402

EXTRAS = ("run.json", "metrics.jsonl", "eval.json")
EXTRA_DIRS = ("tensorboard",)      # their regular files are listed as extras "tensorboard/<path>"


def adapter_files(top):
    files, odd = {}, []
    for folder, dirs, names in os.walk(top):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, top).replace(os.sep, "/")
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files[rel] = st.st_size
            else:
                odd.append(rel)
    return files, odd


def inspect(run_dir):
    run = os.path.abspath(os.path.expanduser(run_dir))
    out = {"run_dir": run, "exists": os.path.isdir(run)}
    if not out["exists"]:
        return out
    state = runstate.read_run(run)
    out["state"] = {k: state[k] for k in ("state", "reason", "exit_code", "stopped", "alive", "payload_status")}
    out["run"], out["run_error"] = runstate.read_json(os.path.join(run, "run.json"))
    out["manifest"], out["manifest_error"] = runstate.read_json(os.path.join(run, "adapter", "manifest.json"))
    top = os.path.join(run, "adapter")
    out["adapter_dir"] = os.path.isdir(top)
    out["adapter_files"], out["adapter_odd"] = adapter_files(top)
    out["extras"] = {}
    for name in EXTRAS:
        path = os.path.join(run, name)
        if os.path.isfile(path) and not os.path.islink(path):
            out["extras"][name] = os.path.getsize(path)
    for folder in EXTRA_DIRS:
        top = os.path.join(run, folder)
        if os.path.isdir(top) and not os.path.islink(top):
            for rel, size in adapter_files(top)[0].items():   # regular files only; links are left out
                out["extras"][folder + "/" + rel] = size
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: inspect_run.py RUN_DIR\n")
        return 2
    sys.stdout.write(json.dumps(inspect(args[0])) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
