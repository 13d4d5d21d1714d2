"""Running preflight: one SSH connection, one probe round trip; the S3 side (the job's weights listing and its
model config.json) runs beside them on the controller. `run_many` checks several instances in parallel; one
failure never hides another. What the answers mean is decided by `rules.py`.

The probe (`remote_payload/probe.py`, stdlib only) is sent on stdin to the instance's system python3 --
nothing is written to a box before it is known to be the right one -- with its parameters (and the source
of `runstate.py`, the one authority on run states) as one JSON argument.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from ..errors import InputError, OrchError
from .rules import Check, human_bytes, job_inputs_check, weights_dir
from .rules import evaluate as evaluate_probe

PROBE_TIMEOUT_S = 60.0
IMDS_TIMEOUT_S = 0.3


@dataclass
class PreflightReport:
    instance: str
    address: str
    checks: list[Check] = field(default_factory=list)
    probe: dict | None = None
    error: str | None = None          # the connection or probe failure that stopped the checks
    exit_code: int = 0                # 0 ok, 1 a check failed / unreachable, 2 bad input (e.g. missing key file)
    seconds: float = 0.0
    round_trips: int = 0
    exception: OrchError | None = field(default=None, repr=False)   # what stopped it, for the CLI boundary

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict:
        return {"instance": self.instance, "address": self.address, "ok": self.ok,
                "checks": [c.to_json() for c in self.checks], "probe": self.probe, "error": self.error,
                "seconds": round(self.seconds, 3), "round_trips": self.round_trips}


# ---------------------------------------------------------------------- the probe

def probe_script() -> bytes:
    from ..bundle import payload_source

    return payload_source("probe.py")

def probe_params(instance, job=None) -> dict:
    params = {"paths": {"models_dir": instance.models_dir, "work_dir": instance.work_dir, "tmp": "/tmp"},
              "work_dir": instance.work_dir, "imds_url": instance.imds_url or None,
              "imds_timeout": IMDS_TIMEOUT_S, "runstate_source": _runstate_source()}
    wdir = weights_dir(instance, job)
    if wdir:
        params["sizes"] = {"weights": wdir}
    return params


def _runstate_source() -> str:
    from ..bundle import payload_source

    return payload_source("runstate.py").decode()


def run_probe(transport, instance, job=None) -> dict:
    """Run the probe in one round trip; the probe never crashes, so a failure here is about python3 itself."""
    from ..errors import RemoteError

    # -I -S: no user site, no PYTHON* variables, no site-packages: stdlib only, and ~10 ms faster to start
    argv = [instance.python or "python3", "-I", "-S", "-",
            json.dumps(probe_params(instance, job), separators=(",", ":"))]
    result = transport.run(argv, stdin=probe_script(), timeout=PROBE_TIMEOUT_S, check=False)
    if result.exit_code == 127 or "not found" in result.err_text and not result.stdout:
        raise _PythonMissing(f"{instance.name}: `{argv[0]}` is not installed on the instance (or not on PATH)")
    try:
        doc = json.loads(result.text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
    except ValueError:
        tail = (result.err_text.strip().splitlines() or ["(no output)"])[-3:]
        raise RemoteError(f"{instance.name}: the probe did not answer with JSON (exit {result.exit_code}): "
                          + " | ".join(tail),
                          hint=f"`{argv[0]}` on the instance must be Python >= 3.6 to run the probe; "
                               f"set instances.{instance.name}.python to another interpreter") from None
    return doc


class _PythonMissing(OrchError):
    pass


# ---------------------------------------------------------------------- running it

def _address(instance) -> str:
    return instance.address     # 'user@host:port', '... via bastion:22' behind a jump host, or 'local'



class _S3Side:
    """What preflight asks S3 from the controller, beside the SSH connection and the probe: the job's weights
    listing (for the disk check) and, for a GPU recipe, the model's config.json (for the memory plan)."""

    def __init__(self, instance, job, s3):
        import threading

        from ..memory_check import needs_plan

        self.instance, self.job, self.s3 = instance, job, s3
        self.bytes: int | None = None
        self.files = 0
        self.error: OrchError | None = None
        self.model_config = None              # model_config.ModelConfig, or the OrchError that kept it
        self._wants_config = needs_plan(instance, job)
        self._thread = threading.Thread(target=self._ask, daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        from ..model_config import from_s3
        from ..weights import list_weights

        try:
            self.files, self.bytes = list_weights(self.job.weights, self.s3)
        except OrchError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - reported as a check, never a crash
            self.error = OrchError(f"listing {self.job.weights} failed: {type(exc).__name__}: {exc}")
        if self._wants_config:
            try:
                self.model_config = from_s3(self.job, self.s3, attempts=1)
            except OrchError as exc:
                self.model_config = exc
            except Exception as exc:  # noqa: BLE001
                self.model_config = OrchError(f"reading config.json failed: {type(exc).__name__}: {exc}")

    def check(self, probe: dict | None) -> Check:
        self._thread.join()
        job = self.job
        if self.error is None:
            present = (((probe or {}).get("sizes") or {}).get("weights") or {}).get("bytes") or 0
            there = f"; {human_bytes(present)} already in {weights_dir(self.instance, job)}" if present else ""
            return Check("weights", True, f"{job.weights}: {human_bytes(self.bytes)} in {self.files} files{there}")
        if isinstance(self.error, InputError) or job.s3_credentials == "forward":
            return Check("weights", False, f"{self.instance.name}: {self.error.message}", self.error.hint)
        # the instance downloads with its own role: the controller not seeing the bucket is no failure
        return Check("weights", True, f"size of {job.weights} unknown from this machine ({self.error.message}); "
                                      "the disk check uses expect.min_free_disk_gb only")


def run_preflight(instance, job=None, *, transport=None, s3=None) -> PreflightReport:
    """Check one instance. Never raises for a failure on the instance: it lands in the report.

    With `transport` (already connected), it is used and left open; otherwise one connection is made
    and closed. Round trips: exactly one (the probe). With a job and its S3 settings (`s3`), the job's
    weights are listed on S3 from here, in parallel, so the disk check counts what is still to download.
    """
    started = time.monotonic()
    report = PreflightReport(instance.name, _address(instance))
    if job is not None:
        report.checks.append(job_inputs_check(job))
    own = transport is None
    s3_side = None
    if job is not None and s3 is not None:
        if instance.transport == "ssh":
            from ..transport.ssh import _paramiko

            _paramiko()  # before the S3 thread imports boto3 (see _paramiko)
        s3_side = _S3Side(instance, job, s3)
    try:
        if own:
            transport = _connect(instance, report)
            if transport is None:
                return report
        before = transport.commands_run
        try:
            probe = run_probe(transport, instance, job)
        except _PythonMissing as exc:
            report.checks.append(Check("python3", False, exc.message,
                                       f"install python3 on the instance, or set instances.{instance.name}.python"))
            return report
        finally:
            report.round_trips = transport.commands_run - before
        report.probe = probe
        if s3_side is not None:
            weights_check = s3_side.check(probe)
            report.checks += evaluate_probe(instance, probe, job, s3_side.bytes, s3_side.model_config)
            report.checks.append(weights_check)
        else:
            report.checks += evaluate_probe(instance, probe, job)
    except OrchError as exc:
        report.error = str(exc)
        report.exit_code = exc.exit_code
        report.exception = exc
    finally:
        if own and transport is not None:
            transport.close()
        report.seconds = time.monotonic() - started
        if not report.ok and report.exit_code == 0:
            report.exit_code = 1
    return report


def _connect(instance, report: PreflightReport):
    """Connect, recording reachability, host key and login as checks (each failure is its own error type).
    None when a step failed."""
    from .. import hostkeys
    from ..transport import connect
    from ..transport.errors import KeyFileError, LoginRefused

    if instance.transport == "local":
        report.checks.append(Check("reachable", True, "local instance (no SSH)"))
        return connect(instance)
    from ..transport.ssh import SshTransport

    transport = SshTransport(instance)
    answers = Check("reachable", True, f"{_address(instance)} answers SSH")
    try:
        transport.connect()
    except (KeyFileError, hostkeys.KnownHostsError) as exc:       # bad input: exit 2, before any traffic
        report.checks.append(Check("host key" if isinstance(exc, hostkeys.KnownHostsError) else "login",
                                   False, exc.message, exc.hint))
        report.error, report.exit_code, report.exception = str(exc), exc.exit_code, exc
        return None
    except hostkeys.HostKeyError as exc:
        report.checks += [answers, Check("host key", False, exc.message, exc.hint)]
        report.exit_code = exc.exit_code
        return None
    except LoginRefused as exc:
        report.checks += [answers, Check("host key", True, _host_key_detail(transport)),
                          Check("login", False, exc.message, exc.hint)]
        report.exit_code = exc.exit_code
        return None
    except OrchError as exc:                                       # Unreachable, Timeout
        report.checks.append(Check("reachable", False, exc.message, exc.hint))
        report.exit_code = exc.exit_code
        return None
    report.checks.append(Check("reachable", True, f"{_address(instance)} (logged in)"))
    report.checks.append(Check("host key", True, _host_key_detail(transport)))
    return transport


def _host_key_detail(transport) -> str:
    """'ssh-ed25519 SHA256:... matches known_hosts line 2 of ...', each bastion's first when there are any."""
    from ..hostkeys import describe_key
    from ..transport.jumps import addr

    parts = []
    for endpoint, key, known in getattr(transport, "hop_keys", []) or [(transport.instance, transport.server_key,
                                                                           transport.host_key)]:
        text = describe_key(key) if key is not None else "?"
        text = f"{text} matches {known.source}" if known is not None else text
        parts.append(f"{addr(endpoint)}: {text}" if getattr(endpoint, "role", "") else text)
    return "; ".join(parts)


def run_many(targets: list[tuple], *, max_workers: int = 16) -> list[PreflightReport]:
    """Preflight several (instance, job, s3) targets in parallel; one failure never hides another."""
    if len(targets) == 1:
        return [_safe(*targets[0])]
    from concurrent.futures import ThreadPoolExecutor

    if any(t[0].transport == "ssh" for t in targets):
        from ..transport.ssh import _paramiko

        _paramiko()  # import once here, not racing in every thread
    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        futures = [pool.submit(_safe, *t) for t in targets]
        return [f.result() for f in futures]


def _safe(instance, job=None, s3=None) -> PreflightReport:
    try:
        return run_preflight(instance, job, s3=s3)
    except Exception as exc:  # a bug for one host must not hide the others
        report = PreflightReport(instance.name, _address(instance), error=f"internal error: "
                                 f"{type(exc).__name__}: {exc}", exit_code=1)
        return report
