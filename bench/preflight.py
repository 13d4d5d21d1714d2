"""Bench: `orch preflight --json` against a loopback sshd, next to bare OpenSSH `ssh host true`.

Starts its own sshd (tests/fixtures/sshd.py as a plain context manager, with the A10G recording), then
runs, interleaved, N times each:

  * `orch --inventory INV preflight --instance bench --json`   (the real console script, a subprocess)
  * `ssh -i KEY -p PORT -o UserKnownHostsFile=KNOWN_HOSTS orchtest@127.0.0.1 true`
  * `orch --version`                                             (start-up alone, for reference)

and prints the medians and the ratio preflight / ssh (target <= 2.0), plus the SSH connections and
round trips one preflight makes (from the sshd log and the JSON report; target 1 and <= 2).

Then, through one jump host (tests/fixtures/sshd.py `JumpPair`: a target sshd inside a network namespace, a
bastion sshd that is the only way in; needs root and `ip netns`), interleaved, N times each:

  * `orch preflight --instance behind --json`        (jump: [bastion] in the inventory)
  * `ssh -F CONFIG behind true`                       (ProxyJump bastion in that config: `ssh -J`)

and the ratio of the medians (target <= 1.5). `--no-jump` skips this part.

    .venv/bin/python bench/preflight.py [-n 15] [--json] [--strict] [--no-jump]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.sshd import JumpPair, SshServer, write_inventory  # noqa: E402

TARGET_RATIO = 2.0
TARGET_JUMP_RATIO = 1.5


def bench_jump(orch: Path, runs: int) -> dict:
    """preflight through one bastion next to `ssh -J bastion target true`, medians over interleaved rounds."""
    with tempfile.TemporaryDirectory(prefix="orch-bench-jump-") as tmp, JumpPair() as pair:
        config = Path(tmp) / "ssh_config"
        config.write_text(pair.ssh_config("behind", "bastion"))
        inventory = write_inventory(Path(tmp), {"behind": pair.instance("behind")})
        preflight = [str(orch), "--inventory", str(inventory), "preflight", "--instance", "behind", "--json"]
        ssh_jump = ["ssh", "-F", str(config), "behind", "true"]
        for argv in (preflight, ssh_jump):   # warm up, and check both pass
            timed(argv)
        samples: dict[str, list[float]] = {"preflight_jump": [], "ssh_jump_true": []}
        for _ in range(runs):
            samples["preflight_jump"].append(timed(preflight))
            samples["ssh_jump_true"].append(timed(ssh_jump))
    medians = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    ratio = medians["preflight_jump"] / medians["ssh_jump_true"]
    return {"median_ms": {k: round(v, 1) for k, v in medians.items()},
            "min_ms": {k: round(min(v) * 1000, 1) for k, v in samples.items()},
            "ratio_preflight_to_ssh_jump_true": round(ratio, 2), "target_ratio": TARGET_JUMP_RATIO,
            "ok": ratio <= TARGET_JUMP_RATIO}


def timed(argv: list[str], expect: int = 0) -> float:
    started = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - started
    if p.returncode != expect:
        raise SystemExit(f"bench: {argv[0]} exited {p.returncode}:\n{p.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a ratio exceeds its target")
    parser.add_argument("--no-jump", action="store_true", help="skip the jump-host part")
    args = parser.parse_args()

    orch = Path(sys.executable).parent / "orch"
    if not orch.exists():
        raise SystemExit(f"bench: no console script at {orch}; run `make install` first")
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp, SshServer() as server:
        server.set_gpu_case("a10g-idle")
        inventory = write_inventory(Path(tmp), {"bench": server.instance("bench")})
        preflight = [str(orch), "--inventory", str(inventory), "preflight", "--instance", "bench", "--json"]
        ssh_true = server.ssh_argv("true")
        version = [str(orch), "--version"]

        # one run to count connections and round trips (and to check it passes)
        time.sleep(0.1)
        connections, sessions = server.connections(), server.sessions()
        p = subprocess.run(preflight, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise SystemExit(f"bench: preflight failed:\n{p.stderr[-2000:]}")
        report = json.loads(p.stdout)["instances"][0]
        time.sleep(0.3)
        counted = {"connections": server.connections() - connections,
                   "round_trips_sshd": server.sessions() - sessions,
                   "round_trips_reported": report["round_trips"]}

        for argv in (preflight, ssh_true, version):  # warm the page cache
            timed(argv)
        samples: dict[str, list[float]] = {"preflight": [], "ssh_true": [], "orch_version": []}
        for _ in range(args.runs):
            samples["preflight"].append(timed(preflight))
            samples["ssh_true"].append(timed(ssh_true))
            samples["orch_version"].append(timed(version))

    medians = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    ratio = medians["preflight"] / medians["ssh_true"]
    doc = {"runs": args.runs, "median_ms": {k: round(v, 1) for k, v in medians.items()},
           "min_ms": {k: round(min(v) * 1000, 1) for k, v in samples.items()},
           "ratio_preflight_to_ssh_true": round(ratio, 2), "target_ratio": TARGET_RATIO, **counted,
           "ok": ratio <= TARGET_RATIO and counted["connections"] == 1 and counted["round_trips_sshd"] <= 2}
    jump = None if args.no_jump else bench_jump(orch, args.runs)
    if jump is not None:
        doc["jump"] = jump
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"orch preflight --json vs bare OpenSSH, loopback sshd, {args.runs} runs each (median / min):")
        for key, label in (("preflight", "orch preflight --json"), ("ssh_true", "ssh host true"),
                           ("orch_version", "orch --version (start-up)")):
            print(f"  {label:28s} {medians[key]:7.1f} ms   {doc['min_ms'][key]:7.1f} ms")
        print(f"  ratio preflight / ssh true   {ratio:7.2f}      (target <= {TARGET_RATIO})")
        print(f"  SSH connections per preflight {counted['connections']} (target 1), round trips "
              f"{counted['round_trips_sshd']} by the sshd log, {counted['round_trips_reported']} reported "
              f"(target <= 2)")
        print("  " + ("OK" if doc["ok"] else "OVER TARGET"))
        if jump is not None:
            m = jump["median_ms"]
            print(f"through one jump host (bastion sshd, target in a network namespace), {args.runs} runs each:")
            for key, label in (("preflight_jump", "orch preflight --json"),
                               ("ssh_jump_true", "ssh -J bastion target true")):
                print(f"  {label:28s} {m[key]:7.1f} ms   {jump['min_ms'][key]:7.1f} ms")
            print(f"  ratio preflight / ssh -J     {jump['ratio_preflight_to_ssh_jump_true']:7.2f}      "
                  f"(target <= {TARGET_JUMP_RATIO})")
            print("  " + ("OK" if jump["ok"] else "OVER TARGET"))
    ok = doc["ok"] and (jump is None or jump["ok"])
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
