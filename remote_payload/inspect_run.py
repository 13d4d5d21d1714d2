"""What `orch fetch-adapter` needs to know about a run folder before any byte of the adapter moves, as one
JSON document. Stdlib only (Python >= 3.6), run from the deployed payload folder:

    inspect_run.py RUN_DIR [--folder REL]

{"run_dir", "exists", "state": runstate's verdict (state, reason, exit_code, stopped, alive, payload_status),
 "run", "run_error" (run.json), "manifest", "manifest_error" (adapter/manifest.json),
 "adapter_dir", "adapter_files" {relative path: size}, "adapter_odd" [links, devices], "extras" {name: size}
 -- run.json, metrics.jsonl, eval.json and every regular file under tensorboard/ as "tensorboard/<path>",
 "exports" {label: export.json or null} -- the folders under RUN/exports/ holding a manifest.json}

`--folder REL` (e.g. `exports/lora`) reports that folder's manifest and files under the same keys instead of
adapter/'s, and its export.json as "record": what `orch fetch-adapter --export` and `orch export` need.
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


def exports(run):
    """{label: export.json (or None when unreadable)} of every finished export of the run."""
    top = os.path.join(run, "exports")
    found = {}
    if os.path.isdir(top) and not os.path.islink(top):
        for label in sorted(os.listdir(top)):
            folder = os.path.join(top, label)
            if os.path.isfile(os.path.join(folder, "manifest.json")) and not os.path.islink(folder):
                found[label] = runstate.read_json(os.path.join(folder, "export.json"))[0]
    return found


def inspect(run_dir, folder="adapter"):
    run = os.path.abspath(os.path.expanduser(run_dir))
    out = {"run_dir": run, "exists": os.path.isdir(run)}
    if not out["exists"]:
        return out
    state = runstate.read_run(run)
    out["state"] = {k: state[k] for k in ("state", "reason", "exit_code", "stopped", "alive", "payload_status")}
    out["run"], out["run_error"] = runstate.read_json(os.path.join(run, "run.json"))
    top = os.path.join(run, *folder.split("/"))
    out["folder"] = folder
    out["manifest"], out["manifest_error"] = runstate.read_json(os.path.join(top, "manifest.json"))
    if folder != "adapter":
        out["record"] = runstate.read_json(os.path.join(top, "export.json"))[0]
    out["adapter_dir"] = os.path.isdir(top)
    out["adapter_files"], out["adapter_odd"] = adapter_files(top)
    out["extras"] = {}
    for name in EXTRAS:
        path = os.path.join(run, name)
        if os.path.isfile(path) and not os.path.islink(path):
            out["extras"][name] = os.path.getsize(path)
    for extra_dir in EXTRA_DIRS:
        top = os.path.join(run, extra_dir)
        if os.path.isdir(top) and not os.path.islink(top):
            for rel, size in adapter_files(top)[0].items():   # regular files only; links are left out
                out["extras"][extra_dir + "/" + rel] = size
    out["exports"] = exports(run)
    return out


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    folder = "adapter"
    if len(args) == 3 and args[1] == "--folder":
        folder = args.pop(2)
        args.pop(1)
        parts = folder.split("/")
        if folder.startswith("/") or any(p in ("", ".", "..") for p in parts):
            sys.stderr.write("inspect_run.py: --folder must be a plain relative path inside the run\n")
            return 2
    if len(args) != 1:
        sys.stderr.write("usage: inspect_run.py RUN_DIR [--folder REL]\n")
        return 2
    sys.stdout.write(json.dumps(inspect(args[0], folder)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
