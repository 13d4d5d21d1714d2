"""A sweep's claims on its home instance: which controller placed which point, atomically. Stdlib only.

    sweepclaim.py claim   --dir DIR --point P --doc JSON   create DIR/P.json unless it exists (O_EXCL)
    sweepclaim.py update  --dir DIR --point P --doc JSON   merge into DIR/P.json (the run id once it started)
    sweepclaim.py requeue --dir DIR --point P --why TEXT   move DIR/P.json aside (P.json.requeued-N) so the point
                                                           can be claimed again; only one caller wins
    sweepclaim.py release --dir DIR --point P --doc JSON   remove DIR/P.json when its owner is doc["owner"]
    sweepclaim.py list    --dir DIR                        {"claims": {P: doc}, "requeued": {P: n}, "stopped": bool}
    sweepclaim.py stop    --dir DIR                        DIR/STOP: no controller places anything more

Two controllers running the same sweep both try to claim a point before starting it; the kernel lets exactly one
create the file, so a point is never placed twice. The runs themselves stay the source of truth for states
(supervise.py status); the claims only say who may start what.
"""

import argparse
import json
import os
import sys
import time


def _path(folder, point):
    if not point or "/" in point or point.startswith("."):
        raise SystemExit("bad point name %r" % point)
    return os.path.join(folder, point + ".json")


def _write_atomic(path, doc):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _read(path):
    try:
        with open(path) as f:
            doc = json.load(f)
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def claim(folder, point, doc):
    os.makedirs(folder, exist_ok=True)
    path = _path(folder, point)
    doc = dict(doc, claimed_at=time.time())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return {"ok": True, "won": False, "claim": _read(path)}
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    return {"ok": True, "won": True, "claim": doc}


def update(folder, point, doc):
    path = _path(folder, point)
    current = _read(path)
    if not current:
        return {"ok": False, "error": "point %s is not claimed" % point}
    if doc.get("owner") and current.get("owner") != doc.get("owner"):
        return {"ok": False, "error": "point %s is claimed by %s" % (point, current.get("owner"))}
    current.update(doc)
    _write_atomic(path, current)
    return {"ok": True, "claim": current}


def release(folder, point, doc):
    path = _path(folder, point)
    current = _read(path)
    if current and current.get("owner") != doc.get("owner"):
        return {"ok": False, "error": "point %s is claimed by %s" % (point, current.get("owner"))}
    try:
        os.unlink(path)
    except OSError:
        pass
    return {"ok": True}


def requeue(folder, point, why):
    path = _path(folder, point)
    n = len([name for name in os.listdir(folder) if name.startswith(point + ".json.requeued-")]) \
        if os.path.isdir(folder) else 0
    aside = "%s.requeued-%d" % (path, n + 1)
    try:
        os.rename(path, aside)   # atomic: a second controller requeuing the same point finds nothing to move
    except OSError:
        return {"ok": True, "won": False}
    doc = _read(aside)
    doc.update(requeued_at=time.time(), why=why)
    _write_atomic(aside, doc)
    return {"ok": True, "won": True}


def listing(folder):
    claims, requeued = {}, {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            claims[name[:-5]] = _read(os.path.join(folder, name))
        elif ".json.requeued-" in name and not name.endswith(".tmp"):
            point = name.split(".json.requeued-")[0]
            requeued[point] = requeued.get(point, 0) + 1
    return {"ok": True, "claims": claims, "requeued": requeued,
            "stopped": os.path.exists(os.path.join(folder, "STOP"))}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sweepclaim.py")
    parser.add_argument("action", choices=("claim", "update", "release", "requeue", "list", "stop"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--point")
    parser.add_argument("--doc", default="{}")
    parser.add_argument("--why", default="")
    args = parser.parse_args(argv)
    if args.action == "claim":
        out = claim(args.dir, args.point, json.loads(args.doc))
    elif args.action == "update":
        out = update(args.dir, args.point, json.loads(args.doc))
    elif args.action == "release":
        out = release(args.dir, args.point, json.loads(args.doc))
    elif args.action == "requeue":
        out = requeue(args.dir, args.point, args.why)
    elif args.action == "stop":
        os.makedirs(args.dir, exist_ok=True)
        _write_atomic(os.path.join(args.dir, "STOP"), {"stopped_at": time.time()})
        out = {"ok": True}
    else:
        out = listing(args.dir)
    print(json.dumps(out))
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
