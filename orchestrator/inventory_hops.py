"""An instance's `jump:` list (and ProxyJump from ssh_config) resolved into the `Hop`s its SSH connection goes
through, first hop first: inventory instances named as jumps bring their own jumps and settings, `user@host:port`
specs are completed from ssh_config and the instance's own login settings; each value keeps its origin."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .transport import jumps, ssh_config


def with_hops(instance, instances: dict, unresolved: dict) -> Instance:
    """`instance` with its `jump` list resolved into Hops, first hop first (the inventory's instance names included,
    with their own jumps before them); each hop named "bastion", "bastion 2"... or "bastion NAME"."""
    hops: list[tuple[jumps.Hop, bool]] = []
    _add_hops(instance, instance.jump, instance.origin("jump"), instances, unresolved, hops, set())
    hops_total = len(hops)
    for i, (hop, named) in enumerate(hops):
        if not named:
            hop.role = jumps.role_of(i, hops_total)
    instance.hops = [h for h, _ in hops]
    return instance


def _add_hops(target, specs: list[str], where: str, instances: dict, unresolved: dict,
              out: list, seen: set) -> None:
    if len(seen) > 8:
        raise InputError(f"instance {target.name}: jump hosts lead to each other in a loop ({where})")
    common = {k: getattr(target, k) for k in ("key_passphrase", "agent", "identities_only", "known_hosts",
                                                 "connect_timeout", "server_alive_interval", "server_alive_count_max")}
    for spec in specs:
        if spec in unresolved:
            raise unresolved[spec]
        other = instances.get(spec)
        if other is not None:
            if other.transport != "ssh" or spec == target.name or spec in seen:
                raise InputError(f"instance {target.name}: jump {spec!r} cannot be a bastion (itself, a loop, or "
                                 "not an ssh instance)", hint=f"fix {where}")
            _add_hops(target, other.jump, other.origin("jump"), instances, unresolved, out, seen | {spec})
            fields_ = {k: getattr(other, k) for k in ("host", "port", "user", "key", "host_key", *common)}
            out.append((jumps.Hop(target.name, f"bastion {spec}", **fields_, origins=dict(other.origins)), True))
            continue
        try:
            user, host, port = jumps.parse_spec(spec)
        except ValueError:
            raise InputError(f"instance {target.name}: jump {spec!r} is not an instance name or user@host:port",
                             hint=f"fix {where}") from None
        origins = {k: where for k in ("host", "user", "port")}
        found = ssh_config.lookup(Path(target.ssh_config), host) if target.ssh_config else {}
        if found.get("jump", ([], ""))[0] and spec not in seen:
            _add_hops(target, found["jump"][0], found["jump"][1], instances, unresolved, out, seen | {spec})
        picked = {"host": host, "user": user, "port": port, "key": None}
        for name in picked:
            if name in found and (picked[name] is None or name == "host"):
                picked[name], origins[name] = found[name]
        if picked["user"] is None:
            picked["user"], origins["user"] = target.user, target.origin("user")
        if picked["key"] is None:
            picked["key"], origins["key"] = target.key, target.origin("key")
        origins.update({k: target.origin(k) for k in common})
        out.append((jumps.Hop(target.name, "bastion", picked["host"], picked["port"] or 22, picked["user"],
                              picked["key"], **common, origins=origins), False))
