"""The sweep loop: observe the fleet, judge lost runs, claim points on the home instance, start runs on free GPUs.

Every round: each instance is asked for its runs (supervise.py status) and, once, for its GPUs (the probe); the
claims are read from the home instance (the sweep's first instance, remote_payload/sweepclaim.py). A point is
placed only after its claim was won, so two controllers never start the same point; a GPU is claimed by the
run's own lock on the instance, so a point placed on a GPU another controller just took is refused there and
its claim released. A run whose instance stopped answering, with its last heartbeat seen older than
`lost_after_s`, is lost: its point is requeued and placed elsewhere (fresh: its checkpoints are on the box that
is gone). A run the instance itself reports lost (its supervisor died) is resumed there with --resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckFailed, OrchError, RemoteError
from . import board
from .placement import free_gpus, is_lost, place
from .spec import Point, SweepSpec, expand

CLAIM_GRACE_S = 300.0     # a claim with no run after this long: its controller died while starting it


@dataclass
class Fleet:
    reachable: dict[str, bool] = field(default_factory=dict)
    runs: dict[str, list[dict]] = field(default_factory=dict)      # last seen, kept for unreachable instances
    usable: dict[str, list[int]] = field(default_factory=dict)     # GPUs no foreign process holds (probe)
    beats: dict[str, float] = field(default_factory=dict)          # run id -> last heartbeat seen (epoch s)


class Sweep:
    def __init__(self, app, spec: SweepSpec, say=print, owner: str | None = None):
        self.app, self.spec, self.say = app, spec, say
        self.points = expand(spec)
        self.by_key = {p.key: p for p in self.points}
        self.job = app.inventory.job(spec.job)
        names = spec.instances or app.inventory.instance_names
        self.instances = {n: app.inventory.instance(n) for n in names}
        self.order = list(names)
        self.home = self.instances[self.order[0]]
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.fleet = Fleet()

    # ---- talking to the instances

    def _remote(self, transport, instance):
        from ..remote import Remote

        return Remote(transport, instance)

    def claims(self, action: str = "list", point: str | None = None, doc: dict | None = None, why: str = "") -> dict:
        from ..transport import connect

        transport = connect(self.home)
        try:
            remote = self._remote(transport, self.home)
            args = [action, "--dir", remote.layout.sweep(self.spec.name)]
            args += ["--point", point] if point else []
            args += ["--doc", json.dumps(doc)] if doc is not None else []
            args += ["--why", why] if why else []
            return remote.json("sweepclaim", *args, what=f"sweep {self.spec.name}: {action}")
        finally:
            transport.close()

    def observe(self, probe: bool = True) -> Fleet:
        from ..preflight.runner import run_probe
        from ..runs import list_runs
        from ..transport import connect

        fleet, now = self.fleet, time.time()
        for name, instance in self.instances.items():
            try:
                transport = connect(instance)
            except (OrchError, OSError):
                fleet.reachable[name] = False
                continue
            try:
                fleet.runs[name] = list_runs(transport, instance)
                if probe and name not in fleet.usable:
                    fleet.usable[name] = self._usable(instance, run_probe(transport, instance))
                fleet.reachable[name] = True
            except (OrchError, OSError):
                fleet.reachable[name] = False
            finally:
                transport.close()
            for run in fleet.runs.get(name, []) if fleet.reachable[name] else []:
                if run.get("heartbeat_age_s") is not None and run.get("state") in board.ACTIVE:
                    fleet.beats[run["run_id"]] = now - run["heartbeat_age_s"]
        return fleet

    def _usable(self, instance, probe: dict) -> list[int]:
        from ..gpu_pick import usable_gpus

        gpus = usable_gpus(probe, instance.expect.gpu, instance.expect.max_gpu_used_mib)
        return gpus if gpus or instance.expect.gpu else [0]   # a box that needs no GPU: one slot

    # ---- judging

    def all_runs(self) -> list[tuple[str, dict]]:
        return [(name, run) for name, runs in self.fleet.runs.items() for run in runs]

    def lost_runs(self, claims: dict) -> set[str]:
        now, lost = time.time(), set()
        for name, run in self.all_runs():
            if run.get("state") not in board.ACTIVE or (run.get("meta") or {}).get("sweep") != self.spec.name:
                continue
            claim = claims.get((run.get("meta") or {}).get("point"), {})
            last = self.fleet.beats.get(run["run_id"], claim.get("claimed_at"))
            if is_lost(self.fleet.reachable.get(name, False), last, now, self.spec.lost_after_s):
                lost.add(run["run_id"])
        return lost

    def rows(self, claims: dict | None = None) -> list[board.Row]:
        claims = claims if claims is not None else {}
        return board.build(self.spec, self.points, self.all_runs(), self.lost_runs(claims))

    # ---- one round

    def step(self) -> tuple[list[board.Row], bool]:
        """One observe-judge-place round; (rows, finished)."""
        self.observe()
        listing = self.claims("list")
        claims = listing["claims"]
        rows = self.rows(claims)
        if listing.get("stopped"):
            return self.settled(claims), True
        resume_on: dict[str, tuple[str, str]] = {}
        for row in rows:
            claim = claims.get(row.point.key)
            if row.state == "lost" and claim and claim.get("run_id") == row.run_id:
                reachable = self.fleet.reachable.get(row.instance, False)
                why = f"run {row.run_id} lost on {row.instance}" + ("" if reachable else " (instance unreachable)")
                if self.claims("requeue", row.point.key, why=why).get("won"):
                    self.say(f"sweep {self.spec.name}: {why}: requeued")
                    claims.pop(row.point.key, None)
                    if reachable:
                        resume_on[row.point.key] = (row.instance, row.run_id)
            elif row.state == "pending" and claim and time.time() - claim.get("claimed_at", 0) > CLAIM_GRACE_S:
                if self.claims("requeue", row.point.key, why="claimed but never started").get("won"):
                    claims.pop(row.point.key, None)
        pending = [r.point.key for r in rows if r.point.key not in claims and r.state in ("pending", "lost")]
        done = all(r.state in board.DONE for r in rows)
        if pending:
            self.place(pending, resume_on)
        return rows, done and not pending

    def settled(self, claims: dict, wait_s: float = 60.0) -> list[board.Row]:
        """After `sweep stop`: the rows once its runs have ended (they are being stopped), or after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while True:
            rows = self.rows(claims)
            if not any(r.state in board.ACTIVE for r in rows) or time.monotonic() > deadline:
                return rows
            time.sleep(1.0)
            self.observe(probe=False)

    def free(self) -> dict[str, list[int]]:
        from ..launch import locked_gpus

        return {name: free_gpus(self.fleet.usable.get(name, []), locked_gpus(self.fleet.runs.get(name, [])))
                for name in self.order if self.fleet.reachable.get(name)}

    def place(self, pending: list[str], resume_on: dict[str, tuple[str, str]]) -> None:
        free = self.free()
        for key in [k for k in pending if k in resume_on]:      # a run lost on a live box resumes there
            instance, _ = resume_on[key]
            gpus = free.get(instance, [])[:self.spec.gpus]
            if len(gpus) == self.spec.gpus:
                free[instance] = free[instance][self.spec.gpus:]
                self.start(self.by_key[key], instance, gpus, resume_on[key][1])
        fresh = [k for k in pending if k not in resume_on]
        for key, slot in place(fresh, free, self.spec.gpus, self.order):
            self.start(self.by_key[key], slot.instance, list(slot.gpus), None)

    def start(self, point: Point, name: str, gpus: list[int], resume_run: str | None) -> bool:
        """Claim the point, then start its run; a lost race (claim or GPU lock) releases and gives up."""
        from ..launch import launch, on_instance
        from ..transport import connect

        won = self.claims("claim", point.key, {"owner": self.owner, "instance": name, "gpus": gpus})
        if not won.get("won"):
            return False
        instance = self.instances[name]
        job = dataclasses.replace(on_instance(self.job, instance, self.spec.gpus),
                                  overrides={**self.job.overrides, **point.params}, gpu=gpus[0])
        meta = {"sweep": self.spec.name, "point": point.key, "params": point.params}
        try:
            transport = connect(instance)
            try:
                launched = launch(self.app, job, instance, transport, gpus=gpus, meta_extra=meta,
                                  resume=resume_run is not None, resume_run=resume_run, say=lambda *a, **k: None)
            finally:
                transport.close()
        except (CheckFailed, RemoteError, OSError) as exc:
            self.claims("release", point.key, {"owner": self.owner})
            self.say(f"sweep {self.spec.name}: {point.label} not started on {name}: {exc}")
            self.fleet.runs.pop(name, None)
            return False
        self.claims("update", point.key, {"owner": self.owner, "run_id": launched.started.run_id})
        self.fleet.runs.setdefault(name, []).append(
            {"run_id": launched.started.run_id, "state": "starting", "started_at": time.time(),
             "meta": {**meta, "gpus": gpus}})
        self.say(f"sweep {self.spec.name}: {point.label} -> {name}:{','.join(map(str, gpus))} "
                 f"({launched.started.run_id}{', resumed' if resume_run else ''})")
        return True

    def run(self, poll: float = 2.0, timeout: float | None = None, on_round=None) -> list[board.Row]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            rows, finished = self.step()
            self.save(rows)
            if on_round:
                on_round(rows)
            if finished:
                return rows
            if deadline is not None and time.monotonic() > deadline:
                raise CheckFailed(f"sweep {self.spec.name}: not finished after {timeout:g} s",
                                  hint="it goes on when started again: `orch sweep start` picks up where it was")
            time.sleep(poll)

    def save(self, rows: list[board.Row]) -> None:
        """The controller's copy (.orch/sweeps/<name>.json): a cache; `orch sweep status` rebuilds it."""
        path = Path(self.app.inventory.path).parent / ".orch" / "sweeps" / f"{self.spec.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sweep": self.spec.name, "saved_at": time.time(),
                                   "rows": [r.to_json() for r in rows]}, indent=1))
        os.replace(tmp, path)
