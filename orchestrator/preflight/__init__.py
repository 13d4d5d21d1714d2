"""`orch preflight`: is this the right box, and is it ready? One SSH connection, one probe round trip.

`rules` compares what the probe found with the inventory and the job (pure functions); `runner` connects,
runs the probe, asks S3 beside it, and checks several instances in parallel.
"""

from .rules import CHECKPOINT_HEADROOM, GB, MIB, Check, evaluate
from .runner import PreflightReport, probe_params, run_many, run_preflight, run_probe

__all__ = ["CHECKPOINT_HEADROOM", "GB", "MIB", "Check", "PreflightReport", "evaluate", "probe_params", "run_many",
           "run_preflight", "run_probe"]
