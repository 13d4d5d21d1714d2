"""The GPUs the planner knows: memory, dense bf16 tensor throughput and memory bandwidth, from NVIDIA's datasheets.

Datasheet throughput is quoted "with sparsity" (2:4 structured) in NVIDIA's tables; training uses dense math, so
the dense figure (half of it) is what is stored here. Memory is what `nvidia-smi` reports as memory.total, in
MiB, where a recorded output exists (tests/data/nvidia_smi); otherwise the datasheet's GB.

* A10G: AWS's variant of the A10 (g5 instances). NVIDIA publishes no A10G datasheet; the A10 datasheet gives
  BF16 tensor 125 TFLOPS dense (250 with sparsity), 24 GB GDDR6, 600 GB/s. nvidia-smi on a g5.4xlarge: 23028 MiB.
* L4 (g6): L4 datasheet: BF16 tensor 242 TFLOPS with sparsity -> 121 dense, 24 GB GDDR6, 300 GB/s;
  nvidia-smi on a g6.xlarge: 23034 MiB.
* A100 40GB / 80GB (SXM): A100 datasheet: BF16 tensor 312 TFLOPS dense (624 sparse); 40 GB HBM2 at 1,555 GB/s,
  80 GB HBM2e at 2,039 GB/s.
* H100 (SXM): H100 datasheet: BF16 tensor 1,979 TFLOPS with sparsity -> 989 dense; 80 GB HBM3 at 3.35 TB/s.
* H200 (SXM): H200 datasheet: BF16 tensor 1,979 TFLOPS with sparsity -> 989 dense; 141 GB HBM3e at 4.8 TB/s.
  nvidia-smi on the H200 the device tool lends: 143771 MiB (KINDS.md), a measured 788 TFLOPS bf16 matmul.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import InputError

MIB = 1024 * 1024
GB = 1_000_000_000


@dataclass(frozen=True)
class GPU:
    name: str                 # as nvidia-smi names it, without "NVIDIA "
    memory_bytes: int
    bf16_tflops: float        # dense
    bandwidth_gbs: float      # GB/s
    source: str

    def to_json(self) -> dict:
        return asdict(self)


GPUS = (
    GPU("A10G", 23028 * MIB, 125.0, 600.0, "NVIDIA A10 datasheet (A10G: AWS's A10); nvidia-smi 23028 MiB"),
    GPU("L4", 23034 * MIB, 121.0, 300.0, "NVIDIA L4 datasheet (242 TFLOPS with sparsity); nvidia-smi 23034 MiB"),
    GPU("A100 40GB", 40 * GB, 312.0, 1555.0, "NVIDIA A100 datasheet, SXM 40 GB HBM2"),
    GPU("A100 80GB", 80 * GB, 312.0, 2039.0, "NVIDIA A100 datasheet, SXM 80 GB HBM2e"),
    GPU("H100", 80 * GB, 989.0, 3350.0, "NVIDIA H100 datasheet, SXM (1,979 TFLOPS with sparsity)"),
    GPU("H200", 143771 * MIB, 989.0, 4800.0, "NVIDIA H200 datasheet, SXM (1,979 with sparsity); nvidia-smi "
                                             "143771 MiB"),
)


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[\s\-_/]+", text.lower()) if t and t not in ("nvidia", "sxm", "sxm4", "sxm5",
                                                                              "pcie", "hbm3", "hbm3e", "tensor",
                                                                              "core", "gpu")]


def find_gpu(name: str, memory_bytes: int | None = None) -> GPU:
    """'A10G', 'NVIDIA A10G', 'a100-80gb', 'NVIDIA A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3' -> the table's entry.
    An A100 named without its size is told apart by `memory_bytes` (e.g. nvidia-smi's memory.total)."""
    want = _tokens(name)
    size = next((t for t in want if re.fullmatch(r"\d+gb", t)), None)
    family = next((t for t in want if not re.fullmatch(r"\d+gb", t)), "")
    matches = [g for g in GPUS if _tokens(g.name)[0] == family]
    if size and len(matches) > 1:
        matches = [g for g in matches if size in _tokens(g.name)]
    if len(matches) > 1 and memory_bytes:
        matches = [min(matches, key=lambda g: abs(g.memory_bytes - memory_bytes))]
    if not matches:
        raise InputError(f"unknown GPU {name!r}", hint=f"known: {', '.join(g.name for g in GPUS)} (--gpu NAME)")
    if len(matches) > 1:
        raise InputError(f"GPU {name!r} is ambiguous: {' or '.join(g.name for g in matches)}",
                         hint=f"name it fully, e.g. --gpu '{matches[0].name}'")
    return matches[0]
