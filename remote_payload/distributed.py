"""One process of a DDP run under torchrun (`supervise.py start --nproc N`), or the single process of a plain run.

torchrun sets RANK / LOCAL_RANK / WORLD_SIZE; without them this is rank 0 of 1 and nothing here changes what a
one-GPU run does. In a run of N processes:

* each rank loads the model on its own GPU (`device_map={"": LOCAL_RANK}`, modeling.device_map) and the process
  group is gloo on CPU, nccl on CUDA, initialised here with a timeout (ORCH_DDP_TIMEOUT_S, default 1800 s)
  before the Trainer's accelerate finds it;
* rank 0 alone writes run.json, metrics.jsonl, tensorboard/, checkpoints and the adapter, and its output goes to
  the run's log as before; rank K > 0 writes its output to RUN/ranks/K.log (`orch logs --rank K`);
* every rank keeps RUN/ranks/K.json: pid, heartbeat (every HEARTBEAT_S), the last step, and at the end its
  completion record (status, the sha256 of its trainable weights): the supervisor judges the run by these
  records, not by torchrun's exit code alone, and `orch status` shows them per rank;
* a watchdog thread in each rank ends that rank when a peer's process is gone or its heartbeat is older than
  the recipe's `ddp_peer_timeout_s` (default 300 s) before the peer finished: gloo ignores `ddp_timeout` on CPU,
  and a frozen peer would otherwise hang the others for ever. torchrun then ends the remaining ranks and the run
  fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RANKS_DIR = "ranks"
HEARTBEAT_S = 2.0
PEER_TIMEOUT_S = 300.0    # until the recipe is read (RankFile.peer_timeout_s = recipe.ddp_peer_timeout_s)
DDP_TIMEOUT_S = float(os.environ.get("ORCH_DDP_TIMEOUT_S", "1800"))


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"rank {self.rank} / local rank {self.local_rank} of world size {self.world_size}")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Rank:
    env = os.environ
    return Rank(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def ranks_dir(run_dir: Path) -> Path:
    return Path(run_dir) / RANKS_DIR


def route_output(run_dir: Path, rank: Rank) -> None:
    """Rank K > 0 writes its stdout/stderr to RUN/ranks/K.log; rank 0 keeps the run's log."""
    if rank.is_main:
        return
    folder = ranks_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{rank.rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def init_process_group(rank: Rank, device: str) -> str | None:
    """gloo on CPU, nccl on CUDA (after pinning this process to its GPU); the backend, None when not distributed."""
    if not rank.distributed:
        return None
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    backend = "gloo"
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(rank.local_rank)
        backend = "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=DDP_TIMEOUT_S))
    return backend


def barrier(rank: Rank) -> None:
    if rank.distributed:
        import torch.distributed as dist

        dist.barrier()


def weights_sha256(model) -> str:
    """sha256 over the trainable parameters (sorted by name): equal on every rank of a healthy DDP run."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RankFile:
    """RUN/ranks/K.json, kept up to date by a heartbeat thread that also watches the peers."""

    def __init__(self, run_dir: Path, rank: Rank):
        self.rank, self.folder = rank, ranks_dir(run_dir)
        self.path = self.folder / f"{rank.rank}.json"
        self.doc = {"rank": rank.rank, "local_rank": rank.local_rank, "world_size": rank.world_size,
                    "pid": os.getpid(), "status": "running", "step": 0, "started_at": time.time()}
        self.peer_timeout_s = PEER_TIMEOUT_S
        self._stop = threading.Event()

    def start(self) -> "RankFile":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write()
        threading.Thread(target=self._beat, daemon=True, name="orch-rank-heartbeat").start()
        return self

    def write(self, **fields) -> None:
        self.doc.update(fields, heartbeat=time.time())
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.doc), encoding="utf-8")
        os.replace(tmp, self.path)

    def finish(self, status: str, **fields) -> None:
        self._stop.set()
        self.write(status=status, finished_at=time.time(), **fields)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.write()
            except OSError:
                pass
            why = self._dead_peer()
            if why:
                print(f"[orch] rank {self.rank.rank}: {why}: ending this rank so the run fails instead of hanging",
                      flush=True)
                self.finish("failed", error=why)
                os._exit(70)

    def _dead_peer(self) -> str | None:
        for other in range(self.rank.world_size):
            if other == self.rank.rank:
                continue
            doc = read_rank(self.folder, other)
            if not doc or doc.get("status") != "running":
                continue   # not started yet (torchrun starts them together), or finished
            pid = doc.get("pid")
            if isinstance(pid, int) and not _alive(pid):
                return f"rank {other} (pid {pid}) is gone"
            age = time.time() - float(doc.get("heartbeat") or 0)
            if age > self.peer_timeout_s:
                return (f"rank {other} (pid {pid}) has not beaten for {age:.0f} s "
                        f"(ddp_peer_timeout_s={self.peer_timeout_s:g})")
        return None


def read_rank(folder: Path, rank: int) -> dict | None:
    try:
        doc = json.loads((Path(folder) / f"{rank}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def step_callback(rank_file: RankFile):
    """A TrainerCallback recording each rank's step in its rank file (what `orch status` shows per rank)."""
    from transformers import TrainerCallback

    class RankStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            rank_file.doc["step"] = state.global_step

    return RankStep()
