"""`inventory.yaml`: the instances orch drives and the jobs bound to them. The one place settings resolve.

Each setting resolves in one readable step: the YAML value (or `defaults:`), with `${VAR}` references
expanded from `.env` then the environment; the variable behind each value is remembered
(`instance.origin("host")`) so that a failed check can name exactly what to fix. Settings that may also come
from a variable alone resolve here too, with that variable as their origin: `imds_url` (ORCH_IMDS_URL),
`connect_timeout` (ORCH_SSH_CONNECT_TIMEOUT) and the S3 settings (`s3:` and the AWS_* variables, see s3.py).

An entry that cannot resolve (a missing variable, a bad value) is kept aside and fails only when it is used,
so that one broken instance never blocks the jobs of another.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError
from .s3 import FIELDS as S3_FIELDS
from .s3 import SECRET_FIELDS as S3_SECRET_FIELDS
from .s3 import S3Settings
from .settings import Variables, is_secret_name, register_secret
from .inventory_hops import with_hops
from .transport import ssh_config
from .yamlfile import read_yaml

DEFAULT_IMDS_URL = "http://169.254.169.254"
TRANSPORTS = ("ssh", "local")
SSH_ONLY = {"host", "port", "user", "key", "host_key", "known_hosts", "key_passphrase", "agent", "identities_only",
            "ssh_config", "jump", "server_alive_interval", "server_alive_count_max"}
NULLABLE = {"python_env", "imds_url", "s3_endpoint", "host_key", "gpu", "instance_id", "instance_type", "hostname",
            "s3_region", "eval_gate", "init_from", "key_passphrase", "agent", "ssh_config", "key"}
NOT_WRITTEN = {"origins", "hops"}      # fields the loader fills, never read from the YAML
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]+\]?)$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*\$?$")
S3_VARIABLES = {"endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
                "profile": ("AWS_PROFILE",), "access_key_id": ("AWS_ACCESS_KEY_ID",),
                "secret_access_key": ("AWS_SECRET_ACCESS_KEY",), "session_token": ("AWS_SESSION_TOKEN",)}


@dataclass
class Expect:
    """What must be true of the box before anything runs there."""

    gpu: str | None = None            # substring of the GPU name, e.g. "A10G"; None: no GPU needed
    gpu_count: int = 1
    min_vram_gb: float = 0.0
    min_free_disk_gb: float = 0.0     # in models_dir, before the job's weights are counted
    min_free_tmp_gb: float = 1.0
    max_gpu_used_mib: int = 1024      # more than this in use by other processes = busy GPU
    instance_id: str | None = None    # EC2 id, checked through IMDSv2
    instance_type: str | None = None
    hostname: str | None = None


@dataclass
class Instance:
    name: str
    models_dir: str
    work_dir: str
    transport: str = "ssh"
    host: str | None = None
    port: int = 22
    user: str | None = None
    key: str | None = None            # private key file on the controller (or IdentityFile from ssh_config)
    key_passphrase: str | None = None # an encrypted key's passphrase: `${VAR}` from .env (masked); unset: a prompt
    agent: bool | None = None         # ssh-agent (SSH_AUTH_SOCK); None: only when no key file is given
    identities_only: bool = False     # with a key file, never offer the agent's keys (IdentitiesOnly)
    ssh_config: str | None = None     # the OpenSSH client config `host` is looked up in (None: not read)
    jump: list = field(default_factory=list)   # bastions, first hop first: instance names or user@host:port
    server_alive_interval: float = 15.0        # keepalive every N s (0: off); the link is given up after
    server_alive_count_max: int = 3            # this many unanswered in a row, as ssh's ServerAlive* do
    host_key: str | None = None       # pinned "ssh-ed25519 AAAA..." (CI), checked before known_hosts
    known_hosts: str | None = None    # file `orch trust` writes to
    python: str = "python3"           # the system interpreter for the stdlib probe and supervisor
    python_env: str | None = None     # an existing env with the payload's pins (e.g. a DLAMI env);
                                      # unset: deploy builds work_dir/venvs/<requirements hash>
    imds_url: str | None = DEFAULT_IMDS_URL
    s3_endpoint: str | None = None
    connect_timeout: float = 10.0
    stall_timeout: float = 120.0      # seconds without a byte from a stream (fetch, logs) before it is failed
    expect: Expect = field(default_factory=Expect)
    hops: list = field(default_factory=list, repr=False)    # `jump` resolved (transport.jumps.Hop), by the loader
    origins: dict[str, str] = field(default_factory=dict, repr=False)

    def origin(self, name: str) -> str:
        """Where a setting came from, or where to set it: 'QWEN_GPU_INSTANCE_IP in .env',
        'inventory.yaml:8 (defaults.port)', or for a built-in default 'instances.X.port in the inventory'."""
        return self.origins.get(name) or f"instances.{self.name}.{name} in the inventory"

    @property
    def address(self) -> str:
        if self.transport == "local":
            return "local"
        via = f" via {', '.join(f'{h.host}:{h.port}' for h in self.hops)}" if self.hops else ""
        return f"{self.user}@{self.host}:{self.port}{via}"

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise InputError(f"instance {self.name}: transport must be one of {', '.join(TRANSPORTS)}, "
                             f"got {self.transport!r}")
        if self.transport == "ssh":
            for required in ("host", "user"):
                if not getattr(self, required):
                    raise InputError(f"instance {self.name}: `{required}` is required for ssh",
                                     hint=f"set instances.{self.name}.{required} (or defaults.{required}), or "
                                          f"give it for the host in ~/.ssh/config (ssh_config)")
            self._check_name("host", HOST, "a host name or IP address (no spaces, not starting with '-')")
            self._check_name("user", USER, "a login name (letters, digits, '_', '.', '-'; not starting with '-')")
        if not 0 < self.port < 65536:
            raise InputError(f"instance {self.name}: port {self.port} is out of range")
        if self.server_alive_interval < 0 or self.server_alive_count_max < 1:
            raise InputError(f"instance {self.name}: server_alive_interval must be >= 0 and server_alive_count_max "
                             ">= 1", hint=f"they come from {self.origin('server_alive_interval')}, "
                                          f"{self.origin('server_alive_count_max')}")
        for name in ("connect_timeout", "stall_timeout"):
            if getattr(self, name) <= 0:
                raise InputError(f"instance {self.name}: {name} must be a positive number of seconds",
                                 hint=f"it comes from {self.origin(name)}")
        for name in ("work_dir", "models_dir"):
            value = getattr(self, name)
            if not value.startswith("/"):
                raise InputError(f"instance {self.name}: {name} must be an absolute path, got {value!r}")

    def _check_name(self, name: str, pattern: re.Pattern, what: str) -> None:
        value = getattr(self, name)
        if not pattern.match(value):
            raise InputError(f"instance {self.name}: {name} {value!r} is not {what}",
                             hint=f"it comes from {self.origin(name)}: fix it there")


@dataclass
class Job:
    name: str
    instance: str
    recipe: str                       # a built-in recipe name, or a YAML recipe file (absolute after loading)
    dataset: str                      # a file on the controller
    weights: str                      # s3://bucket/prefix/
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_dataset: str | None = None   # held-out examples for evaluation during/after training (a file)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_credentials: str = "instance"  # "instance": the box's own role; "forward": the controller's
    eval_gate: float | None = None    # set: an override of the recipe's gate (which is the one gate)
    gpu: int = 0                      # the GPU of a one-GPU run
    gpus: str = "1"                   # GPUs of one run: N (> 1: torchrun DDP on N idle GPUs) or "all"
    init_from: str | None = None      # stage 2: a job (its latest succeeded run), a run id, or s3://.../adapter/
    replay: dict[str, Any] = field(default_factory=dict)   # stage 2: {job: NAME, fraction: F}, F of the mix
    replay_dataset: str | None = None  # resolved by load_inventory: the replay job's dataset (never set in YAML)
    origins: dict[str, str] = field(default_factory=dict, repr=False)   # field (overrides.KEY too) -> file:line

    def __post_init__(self) -> None:
        self._check_stages()
        if not S3_URI.match(self.weights):
            raise InputError(f"job {self.name}: weights must be an s3://bucket/prefix/ URI, got {self.weights!r}")
        if self.s3_credentials not in ("instance", "forward"):
            raise InputError(f"job {self.name}: s3_credentials must be 'instance' or 'forward'")
        if self.eval_gate is not None and self.eval_gate <= 0:
            raise InputError(f"job {self.name}: eval_gate must be positive")
        self.gpus = str(self.gpus).strip().lower()
        if self.gpus != "all" and not (self.gpus.isdigit() and int(self.gpus) >= 1):
            raise InputError(f"job {self.name}: gpus must be a number >= 1 or 'all', got {self.gpus!r}",
                             hint=f"it comes from {self.origins.get('gpus', 'the command line')}")

    @property
    def gpu_count(self) -> int | None:
        """GPUs one run of this job uses; None for "all" (every GPU of the instance)."""
        return None if self.gpus == "all" else int(self.gpus)

    def _check_stages(self) -> None:
        from remote_payload.replay import MAX_FRACTION

        if self.init_from is not None and self.init_from.startswith("s3://") and not S3_URI.match(self.init_from):
            raise InputError(f"job {self.name}: init_from {self.init_from!r} is not an s3://bucket/prefix/ URI",
                             hint="e.g. s3://my-bucket/adapters/qwen/<run id>/adapter/ (what fetch-adapter --upload "
                                  "writes), a job name or a run id")
        if self.init_from == self.name:
            raise InputError(f"job {self.name}: init_from names the job itself",
                             hint="name the stage-1 job (e.g. init_from: qwen), a run id or an s3:// adapter")
        if not self.replay:
            return
        unknown = sorted(set(self.replay) - {"job", "fraction"})
        if unknown or not isinstance(self.replay.get("job"), str):
            raise InputError(f"job {self.name}: replay must be {{job: NAME, fraction: F}}"
                             + (f" (unknown key {unknown[0]!r})" if unknown else ""),
                             hint="e.g. replay: {job: qwen, fraction: 0.1}: 10% of the mix from job qwen's dataset")
        fraction = self.replay.get("fraction")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= MAX_FRACTION:
            raise InputError(f"job {self.name}: replay.fraction must be a number in (0, {MAX_FRACTION}] "
                             f"(got {fraction!r})", hint="seed 001 keeps 5-10% of stage-1 data: fraction: 0.1")


@dataclass
class Inventory:
    path: Path
    instances: dict[str, Instance]
    jobs: dict[str, Job]
    variables: Variables
    unresolved: dict[str, InputError] = field(default_factory=dict)  # name -> why it cannot resolve
    s3: dict[str, tuple[str | None, str]] = field(default_factory=dict)   # the `s3:` section: field -> (value, origin)

    @property
    def instance_names(self) -> list[str]:
        return sorted(set(self.instances) | {n for n in self.unresolved if not n.startswith("job:")})

    @property
    def job_names(self) -> list[str]:
        return sorted(set(self.jobs) | {n[4:] for n in self.unresolved if n.startswith("job:")})

    def instance(self, name: str) -> Instance:
        if name in self.unresolved:
            raise self.unresolved[name]
        if name not in self.instances:
            raise InputError(f"unknown instance {name!r} in {self.path}",
                             hint=f"known instances: {', '.join(self.instance_names) or 'none'}")
        return self.instances[name]

    def job(self, name: str) -> Job:
        if f"job:{name}" in self.unresolved:
            raise self.unresolved[f"job:{name}"]
        if name not in self.jobs:
            raise InputError(f"unknown job {name!r} in {self.path}",
                             hint=f"known jobs: {', '.join(self.job_names) or 'none'}")
        return self.jobs[name]

    def job_of_run(self, run_id: str) -> str:
        """The job a run id belongs to: ids are `<job>-<YYYYmmdd>-<HHMMSS>-<hex>`."""
        name = run_id.rsplit("-", 3)[0] if run_id.count("-") >= 3 else run_id
        if name not in self.job_names:
            raise InputError(f"cannot tell which instance run {run_id} is on",
                             hint="add --instance NAME (or the run's job)")
        return name

    def s3_settings(self, job: Job | None = None, instance: Instance | None = None) -> S3Settings:
        """The S3 settings for `job` on `instance`, each with its origin (the order is documented in s3.py)."""
        settings = S3Settings()

        def take(name: str, *candidates: tuple[str | None, str | None]) -> None:
            for value, origin in candidates:
                if value:
                    setattr(settings, name, value)
                    settings.origins[name] = origin or "?"
                    return

        for name in S3_FIELDS:
            ours: list[tuple[str | None, str | None]] = []
            if name == "endpoint":
                ours = [(job.s3_endpoint, job.origins.get("s3_endpoint")) if job else (None, None),
                        (instance.s3_endpoint, instance.origins.get("s3_endpoint")) if instance else (None, None)]
            elif name == "region" and job:
                ours = [(job.s3_region, job.origins.get("s3_region"))]
            take(name, *ours, self.s3.get(name, (None, None)), self.variables.first(*S3_VARIABLES[name]))
        for name in S3_SECRET_FIELDS:
            register_secret(getattr(settings, name))
        return settings

    def resolve(self, job: str | None, instance: str | None, *, need_job: bool = True,
                run_id: str | None = None) -> tuple[Job | None, Instance]:
        """The job and the instance a command targets. `--instance` alone picks the job bound to it;
        `--run ID` alone, the job (and so the instance) the run id names."""
        if run_id and not job and not instance:
            job = self.job_of_run(run_id)
        if job:
            found = self.job(job)
            if instance and instance != found.instance:
                raise InputError(f"job {job} is bound to instance {found.instance}, not {instance}",
                                 hint=f"drop --instance, or add a job bound to {instance} in {self.path} "
                                      "(orch never moves a job to another box silently)")
            return found, self.instance(found.instance)
        if not instance:
            raise InputError("name a job or an instance",
                             hint=f"jobs: {', '.join(self.job_names) or 'none'}; instances (--instance): "
                                  f"{', '.join(self.instance_names) or 'none'}")
        target = self.instance(instance)
        bound = [j for j in self.jobs.values() if j.instance == instance]
        if len(bound) == 1:
            return bound[0], target
        if len(bound) > 1 and need_job:
            names = ", ".join(sorted(j.name for j in bound))
            raise InputError(f"instance {instance} has several jobs ({names}); which one?",
                             hint=f"name it: `orch ... {bound[0].name} --instance {instance}`")
        if need_job:
            raise InputError(f"no job is bound to instance {instance}",
                             hint=f"name a job, or add one with `instance: {instance}` under jobs:")
        return None, target


def load_inventory(path: str | Path | None = None, env_file: str | Path | None = None) -> Inventory:
    """Read and check the inventory. Every problem is an InputError naming the file and line."""
    inv_path = Path(path or os.environ.get("ORCH_INVENTORY") or "inventory.yaml")
    explicit_env = env_file is not None or "ORCH_ENV_FILE" in os.environ
    env_path = Path(env_file or os.environ.get("ORCH_ENV_FILE") or inv_path.parent / ".env")
    variables = Variables.load(env_path, explicit=explicit_env)
    if not inv_path.is_file():
        raise InputError(f"inventory {inv_path} not found",
                         hint="run orch from the project folder, or pass --inventory PATH / set ORCH_INVENTORY")
    doc, lines = read_yaml(inv_path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InputError(f"{inv_path}: the top level must be a mapping with instances: and jobs:")
    reader = _Reader(inv_path, lines, variables)
    reader.check_keys(doc, "", {"defaults", "instances", "jobs", "s3"})
    defaults = reader.mapping(doc.get("defaults") or {}, "defaults")
    inventory = Inventory(inv_path, {}, {}, variables, s3=reader.s3(doc.get("s3") or {}))
    for name, body in reader.mapping(doc.get("instances") or {}, "instances").items():
        _add(inventory.instances, inventory.unresolved, str(name), lambda: reader.instance(str(name), body, defaults))
    for name, body in reader.mapping(doc.get("jobs") or {}, "jobs").items():
        _add(inventory.jobs, inventory.unresolved, f"job:{name}", lambda: reader.job(str(name), body), key=str(name))
    for name, instance in list(inventory.instances.items()):
        if instance.jump:
            _add(inventory.instances, inventory.unresolved, name,
                 lambda: with_hops(instance, inventory.instances, inventory.unresolved))
            if name in inventory.unresolved:
                inventory.instances.pop(name, None)
    known = set(inventory.instance_names)
    for job in inventory.jobs.values():
        if job.instance not in known:
            inventory.unresolved[f"job:{job.name}"] = InputError(
                f"{reader.at('jobs.' + job.name + '.instance')}job {job.name} is bound to unknown instance "
                f"{job.instance!r}", hint=f"known instances: {', '.join(sorted(known)) or 'none'}")
    for job in list(inventory.jobs.values()):
        _resolve_replay(inventory, reader, job)
    for name in [n[4:] for n in inventory.unresolved if n.startswith("job:")]:
        inventory.jobs.pop(name, None)
    return inventory


def _resolve_replay(inventory: Inventory, reader: "_Reader", job: Job) -> None:
    """A job's `replay: {job: X}` gets X's dataset file (the mix is built into the job's inputs, bundle.py)."""
    if not job.replay:
        return
    other = job.replay["job"]
    if other not in inventory.jobs:
        inventory.unresolved[f"job:{job.name}"] = InputError(
            f"{reader.at('jobs.' + job.name + '.replay')}job {job.name}: replay names unknown job {other!r}",
            hint=f"known jobs: {', '.join(sorted(inventory.jobs)) or 'none'}")
        return
    job.replay_dataset = inventory.jobs[other].dataset


def _add(target: dict, unresolved: dict, name: str, build, key: str | None = None) -> None:
    """Build one entry. An entry that cannot resolve (a missing variable, a bad value) is kept aside and
    fails only when used, so that a missing QWEN_GPU_INSTANCE_IP never stops `orch train demo`."""
    try:
        target[key or name] = build()
    except InputError as exc:
        unresolved[name] = exc


class _Reader:
    """Turns the parsed YAML into typed objects, with the file and line in every error."""

    def __init__(self, path: Path, lines: dict[str, int], variables: Variables):
        self.path, self.lines, self.variables = path, lines, variables
        self.base = path.resolve().parent

    def at(self, where: str) -> str:
        line = self.lines.get(where)
        return f"{self.path}:{line}: " if line else f"{self.path}: "

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise InputError(f"{self.at(where)}{where} must be a mapping, got {type(value).__name__}")
        return value

    def check_keys(self, body: dict, where: str, allowed: set[str]) -> None:
        for key in body:
            if key not in allowed:
                full = f"{where}.{key}" if where else str(key)
                raise InputError(f"{self.at(full)}unknown field {full!r}",
                                 hint=f"allowed here: {', '.join(sorted(allowed))}")

    def value(self, raw: Any, where: str, kind: type, origins: dict[str, str], name: str) -> Any:
        """Expand variables in one value and convert it to the field's type."""
        used = []
        if isinstance(raw, str):
            raw, used = self.variables.interpolate(raw, f"{self.at(where)}{where}")
        line = self.lines.get(where)
        origins[name] = ", ".join(used) if used else (f"{self.path.name}:{line} ({where})" if line else where)
        if raw is None or raw == "":
            return None
        try:
            return _convert(raw, kind)
        except (TypeError, ValueError):
            secret = any(is_secret_name(origin.split()[0]) for origin in used)
            raise InputError(f"{self.at(where)}{where} must be {_type_name(kind)}, got "
                             f"{'a masked value' if secret else repr(raw)}",
                             hint=f"fix {where} in {self.path}" +
                                  (f" or {origins[name]}" if name in origins else "")) from None

    def build(self, cls, body: dict, where: str, fixed: dict, inherited: set[str] = frozenset()
              ) -> tuple[dict, dict[str, str]]:
        specs = {f.name: f for f in fields(cls) if f.name not in fixed and f.name not in NOT_WRITTEN}
        self.check_keys(body, where, set(specs))
        values, origins = dict(fixed), {}
        for name, raw in body.items():
            kind = _field_type(specs[name])
            at = f"defaults.{name}" if name in inherited else f"{where}.{name}"
            if kind is Expect:
                values[name] = self.expect(raw, at, origins)
            elif kind is dict:
                values[name] = self.mapping(raw, at)
            else:
                converted = self.value(raw, at, kind, origins, name)
                if converted is not None or name in NULLABLE:
                    values[name] = converted  # an empty `imds_url:` switches IMDS off
        return values, origins

    def expect(self, body: Any, where: str, origins: dict[str, str]) -> Expect:
        values, used = self.build(Expect, self.mapping(body, where), where, {})
        origins.update({f"expect.{name}": origin for name, origin in used.items()})
        return Expect(**values)

    def from_variable(self, values: dict, origins: dict, name: str, variable: str, kind: type) -> None:
        """A setting the inventory does not give, taken from a variable (.env, then the environment)."""
        raw, origin = self.variables.lookup(variable)
        if raw is None:
            return
        try:
            values[name] = _convert(raw, kind) if raw != "" else None
        except (TypeError, ValueError):
            raise InputError(f"{variable} must be {_type_name(kind)}, got {raw!r}",
                             hint=f"fix {origin}") from None
        origins[name] = origin

    def instance(self, name: str, body: Any, defaults: dict) -> Instance:
        where = f"instances.{name}"
        own = self.mapping(body or {}, where)
        if own.get("transport", defaults.get("transport")) == "local":
            defaults = {k: v for k, v in defaults.items() if k not in SSH_ONLY}
        merged = {**defaults, **own}
        inherited = {k for k in defaults if k not in own}
        values, origins = self.build(Instance, merged, where, {"name": name}, inherited)
        if values.get("transport", "ssh") == "ssh":
            self.ssh_config(values, origins, merged, where)
        register_secret(values.get("key_passphrase"))
        for key in ("key", "known_hosts"):
            if values.get(key):
                values[key] = str(self._local_path(values[key]))
        if values.get("transport") == "local":
            for key in ("work_dir", "models_dir", "python_env"):
                if values.get(key):
                    values[key] = str(self._local_path(values[key]))
        if values.get("known_hosts") is None and values.get("transport", "ssh") == "ssh":
            values["known_hosts"] = str(self.base / "known_hosts")
        if "imds_url" not in merged:
            self.from_variable(values, origins, "imds_url", "ORCH_IMDS_URL", str)
        if "connect_timeout" not in merged:
            self.from_variable(values, origins, "connect_timeout", "ORCH_SSH_CONNECT_TIMEOUT", float)
        for key in ("work_dir", "models_dir"):
            if key not in values:
                raise InputError(f"{self.at(where)}instance {name}: `{key}` is required",
                                 hint=f"add {where}.{key}: /home/ubuntu/... to {self.path}")
        try:
            return Instance(**values, origins=origins)
        except InputError as exc:
            raise InputError(f"{self.at(where)}{exc.message}", exc.hint) from None

    def ssh_config(self, values: dict, origins: dict, merged: dict, where: str) -> None:
        """`ssh_config: true|false|PATH` (unset: ~/.ssh/config when it exists): `host` looked up there as a Host
        alias; what the inventory gives wins, what the file gives is taken with its file:line."""
        raw = values.get("ssh_config")
        flag = str(raw).lower() if raw is not None else None
        if flag in ("false", "no", "0", "off"):
            values["ssh_config"] = None
            return
        if flag is None or flag in ("true", "yes", "1", "on"):
            path = ssh_config.default_path()
            if flag is None and not path.is_file():
                values["ssh_config"] = None
                return
            if flag is None:
                origins["ssh_config"] = f"default ({ssh_config.shown(path)} exists)"
        else:
            path = self._local_path(str(raw))
        if not path.is_file():
            raise InputError(f"{self.at(where + '.ssh_config')}ssh config {path} does not exist",
                             hint=f"fix {where}.ssh_config (true: ~/.ssh/config; false: none)")
        values["ssh_config"] = str(path)
        if not values.get("host"):
            return
        for name, (value, origin) in ssh_config.lookup(path, values["host"]).items():
            if name == "host" or name not in merged:
                values[name], origins[name] = value, origin

    def job(self, name: str, body: Any) -> Job:
        where = f"jobs.{name}"
        values, origins = self.build(Job, self.mapping(body or {}, where), where,
                                     {"name": name, "replay_dataset": None})
        for required in ("instance", "recipe", "dataset", "weights"):
            if required not in values:
                raise InputError(f"{self.at(where)}job {name}: `{required}` is required")
        for key in ("dataset", "eval_dataset") + (("recipe",) if values["recipe"].endswith((".yaml", ".yml")) else ()):
            if values.get(key):
                values[key] = str(self._local_path(values[key]))
        origins.update({f"overrides.{k}": f"{self.path.name}:{self.lines[f'{where}.overrides.{k}']} "
                        f"({where}.overrides.{k})" for k in values.get("overrides", {})
                        if f"{where}.overrides.{k}" in self.lines})
        try:
            return Job(**values, origins=origins)
        except InputError as exc:
            raise InputError(f"{self.at(where)}{exc.message}", exc.hint) from None

    def s3(self, body: Any) -> dict[str, tuple[str | None, str]]:
        """The top-level `s3:` section: field -> (value, origin)."""
        body = self.mapping(body, "s3")
        self.check_keys(body, "s3", set(S3_FIELDS))
        out = {}
        for name, raw in body.items():
            origins: dict[str, str] = {}
            value = self.value(raw, f"s3.{name}", str, origins, name)
            out[name] = (value, origins[name])
            if name in S3_SECRET_FIELDS:
                register_secret(value)
        return out

    def _local_path(self, value: str) -> Path:
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else (self.base / path).resolve()


def _field_type(f) -> type:
    text = str(f.type)
    for name, kind in (("Expect", Expect), ("dict", dict), ("list", list), ("int", int), ("float", float),
                       ("bool", bool)):
        if text.startswith(name):
            return kind
    return str


def _convert(raw: Any, kind: type) -> Any:
    if kind is list:   # a YAML list of names, or one comma-separated string (as ProxyJump writes it)
        items = raw if isinstance(raw, list) else str(raw).split(",")
        if any(isinstance(i, (dict, list)) for i in items):
            raise TypeError
        return [str(i).strip() for i in items if str(i).strip()]
    if kind is str:
        if isinstance(raw, (dict, list)):
            raise TypeError
        return str(raw)
    if kind is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise TypeError
        return int(raw)
    if kind is float:
        if isinstance(raw, bool):
            raise TypeError
        return float(raw)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(raw).lower() in ("true", "yes", "1")
        raise ValueError
    return raw


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            list: "a list"}.get(kind, str(kind))
