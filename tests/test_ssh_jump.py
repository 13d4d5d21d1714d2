"""An instance behind a bastion, through the CLI a user runs, against two real OpenSSH sshds (`jump_pair`).

What proves "reachable only through the bastion": the target sshd listens on 127.0.0.1 inside a network
namespace the fixture creates (tests/fixtures/sshd.py, `JumpPair`), so from the test's own namespace that
address and port refuse -- every test that connects asserts it first -- and there is no route into it. The
bastion listens on the test namespace's loopback and runs each connection as `sshd -i` *inside* the target's
namespace, so its `direct-tcpip` forwarding is the one way in. Counting each sshd's "Connection from" lines
shows one TCP connection from here (to the bastion) and one from the bastion to the target per command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, orch
from tests.fixtures.sshd import write_inventory

pytestmark = pytest.mark.timeout(300)
RUN_ID = "behind-20260101-000000-abcd"


def project(pair, tmp_path: Path, env: dict | None = None, **fields) -> Path:
    entry = pair.instance("behind", gpu=None, **fields)
    job = {"instance": "behind", "recipe": "tiny-verbosity", "weights": "s3://orch-jump/tiny/",
           "dataset": str(ROOT / "training_data" / "verbosity_demo.jsonl")}
    return write_inventory(tmp_path, {"behind": entry}, {"behind": job}, env=env)


def run(inventory: Path, *args: str, env: dict | None = None, timeout: float = 120):
    r = orch("--inventory", str(inventory), *args, cwd=inventory.parent, env={"COLUMNS": "250", **(env or {})},
             timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def checks(r) -> dict:
    return {c["name"]: c for c in r.json()["instances"][0]["checks"]}


def test_preflight_reaches_a_box_only_reachable_through_the_bastion_over_one_connection(jump_pair, tmp_path):
    assert jump_pair.direct_refused()
    inventory = project(jump_pair, tmp_path)
    bastion, target = jump_pair.bastion.connections(), jump_pair.target.connections()
    r = run(inventory, "preflight", "--instance", "behind", "--json")
    assert r.code == 0, r.stdout + r.stderr
    doc = r.json()["instances"][0]
    assert doc["round_trips"] == 1
    assert f"via 127.0.0.1:{jump_pair.bastion.port}" in doc["address"]
    key = checks(r)["host key"]["detail"]   # both hops' keys were checked against the known_hosts file
    assert f"bastion 127.0.0.1:{jump_pair.bastion.port}: ssh-ed25519 {jump_pair.bastion.host_key_fingerprint()}" in key
    assert f"ssh-ed25519 {jump_pair.target.host_key_fingerprint()} matches" in key
    assert jump_pair.bastion.wait_for(jump_pair.bastion.connections, bastion + 1) == bastion + 1
    assert jump_pair.target.wait_for(jump_pair.target.connections, target + 1) == target + 1


def test_the_payload_a_followed_run_and_fetch_work_through_the_bastion(jump_pair, tmp_path):
    """What deploy and train do over the connection (ship the payload, start a supervised run), then the CLI's
    `logs --follow` and `fetch-adapter`, on a run whose output the test controls. (`orch deploy` and `orch train`
    themselves, with the pinned venv and S3: the test after this one.)"""
    from orchestrator.inventory import load_inventory
    from orchestrator.remote import Remote
    from orchestrator.transport import connect
    from tests.test_fetch_local import MB, make_run

    assert jump_pair.direct_refused()
    inventory = project(jump_pair, tmp_path)
    instance = load_inventory(inventory).instance("behind")
    with connect(instance) as transport:       # the same connect() every command uses
        remote = Remote(transport, instance)
        assert remote.ensure_payload() > 0     # deploy's archive went through both hops
        meta = {"run_id": RUN_ID, "job": "behind", "payload": remote.payload_dir}
        started = remote.json("supervise", "start", "--run-dir", remote.layout.run(RUN_ID), "--lock",
                              remote.layout.gpu_lock(0), "--meta", json.dumps(meta), "--", "sh", "-c",
                              "for i in 1 2 3 4 5; do echo step $i; done", what="starting")
        assert started["ok"], started
    followed = run(inventory, "logs", "--instance", "behind", "--run", RUN_ID, "--follow")
    assert followed.code == 0, followed.stderr
    assert [line for line in followed.stdout.splitlines() if line.startswith("step ")] == \
        [f"step {i}" for i in range(1, 6)]

    fetched_run = make_run(Path(instance.work_dir) / "runs" / "behind-20260101-000001-beef",
                           {"adapter_config.json": 700, "adapter_model.safetensors": 2 * MB})
    dest = tmp_path / "adapters"
    fetched = run(inventory, "fetch-adapter", "--instance", "behind", "--run", fetched_run.name, "--dest",
                  str(dest), "--json")
    assert fetched.code == 0, fetched.stderr
    assert fetched.json()["verified"]
    got = dest / "demo" / fetched_run.name / "adapter" / "adapter_model.safetensors"   # make_run's job: demo
    assert got.read_bytes() == (fetched_run / "adapter" / "adapter_model.safetensors").read_bytes()


def test_orch_train_through_the_bastion_deploys_trains_the_tiny_model_and_fetches_its_adapter(
        jump_pair, tmp_path, instance_venv, moto_server, tiny_model_dir):
    """The whole CLI through the jump: preflight, deploy, `train --follow` of the tiny recipe (its weights from
    S3, synced by the instance), then `fetch-adapter`. The instance's namespace cannot reach the S3 server on
    the test's loopback; a relay opens that one port inside it (tests/fixtures/netns_relay.py: a private
    subnet's route to S3), so the controller and the instance use one endpoint URL, as on a real VPC."""
    from tests.fixtures.netns_relay import PortIntoNamespace
    from tests.fixtures.s3server import unique_bucket, upload_weights

    assert jump_pair.direct_refused()
    bucket, prefix = unique_bucket("jump"), "models/tiny-qwen3/"
    files = {p.relative_to(tiny_model_dir).as_posix(): p.read_bytes()
             for p in sorted(Path(tiny_model_dir).rglob("*")) if p.is_file()}
    upload_weights(moto_server.client(), bucket, prefix, files)
    probe = ["ip", "netns", "exec", jump_pair.ns.name, "python3", "-c",
             f"import socket; socket.create_connection(('127.0.0.1', {moto_server.port}), timeout=2)"]
    assert subprocess.run(probe, capture_output=True).returncode != 0    # no S3 in there without the relay
    entry = jump_pair.instance("behind", gpu=None, python_env=str(instance_venv))
    job = {"instance": "behind", "recipe": "tiny-verbosity", "dataset": str(ROOT / "training_data" /
           "verbosity_demo.jsonl"), "weights": f"s3://{bucket}/{prefix}", "s3_endpoint": moto_server.endpoint,
           "s3_region": "us-east-1", "s3_credentials": "forward",
           "overrides": {"max_steps": 20, "eval_after_train": False}}
    inventory = write_inventory(tmp_path, {"behind": entry}, {"tiny": job}, env={})
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}
    mark = moto_server.mark()
    with PortIntoNamespace(jump_pair.ns.name, moto_server.port, tmp_path / "relay.log") as relay:
        assert subprocess.run(probe, capture_output=True).returncode == 0
        relayed = relay.connections()
        preflight = run(inventory, "preflight", "tiny", "--json", env=env)
        assert preflight.code == 0, preflight.stdout + preflight.stderr
        deployed = run(inventory, "deploy", "tiny", "--json", env=env)
        assert deployed.code == 0, deployed.stderr
        assert deployed.json()["payload_bytes_sent"] > 0
        trained = run(inventory, "train", "tiny", "--follow", "--json", env=env, timeout=240)
        assert trained.code == 0, trained.stderr[-3000:]
        assert relay.connections() > relayed        # the instance's weights sync came through the relay
    doc = trained.json()
    assert doc["state"] == "finished" and doc["exit_code"] == 0, doc
    run_id = doc["run_id"]
    assert "[orch] run finished with exit code 0" in trained.stderr     # the followed log, through both hops
    reads = {r.bucket_and_key[1] for r in moto_server.requests(since=mark, bucket=bucket) if r.is_object_read}
    assert {prefix + rel for rel in files} <= reads                     # every weights file came from S3

    dest = tmp_path / "adapters"
    fetched = run(inventory, "fetch-adapter", "tiny", "--dest", str(dest), "--json", env=env)
    assert fetched.code == 0, fetched.stderr
    assert fetched.json()["verified"]
    adapter = dest / "tiny" / run_id / "adapter"
    remote = Path(entry["work_dir"]) / "runs" / run_id / "adapter"
    assert (adapter / "manifest.json").is_file()
    assert (adapter / "adapter_model.safetensors").read_bytes() == \
        (remote / "adapter_model.safetensors").read_bytes()


def test_a_port_on_the_instance_is_forwarded_through_the_bastion(jump_pair, tmp_path):
    from orchestrator.inventory import load_inventory
    from orchestrator.transport import connect
    from orchestrator.transport.forward import Forward
    from tests.fixtures.sshd import free_port

    inventory = project(jump_pair, tmp_path)
    instance = load_inventory(inventory).instance("behind")
    served = Path(instance.work_dir) / "served"
    served.mkdir()
    (served / "hello.txt").write_text("from behind the bastion\n")
    os.chmod(served, 0o755)
    port = free_port()
    with connect(instance) as transport:
        server = transport.open(["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(served)])
        try:
            with Forward(transport, port) as fwd:
                url = f"http://127.0.0.1:{fwd.local_port}/hello.txt"
                deadline = time.monotonic() + 30
                while True:      # the server on the instance starts in the background: wait until it answers
                    try:
                        with urllib.request.urlopen(url, timeout=5) as response:
                            body = response.read().decode()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        finally:
            server.kill()
    assert body == "from behind the bastion\n"
    # the instance's port is not reachable from here: only the forward reached it
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=2)


def test_a_changed_bastion_host_key_is_refused_with_both_fingerprints_before_the_target_is_contacted(
        jump_pair, tmp_path):
    inventory = project(jump_pair, tmp_path)
    old = jump_pair.bastion.host_key_fingerprint()
    jump_pair.bastion.rotate_host_key()
    new = jump_pair.bastion.host_key_fingerprint()
    target = jump_pair.target.connections()
    logins = jump_pair.bastion.logins()
    r = run(inventory, "preflight", "--instance", "behind", "--json")
    assert r.code == 1
    check = checks(r)["host key"]
    assert f"HOST KEY CHANGED for bastion 127.0.0.1:{jump_pair.bastion.port}" in check["detail"]
    assert new in check["detail"] and old in check["detail"]
    assert "orch trust --instance behind --replace" in check["fix"]
    assert jump_pair.bastion.logins() == logins           # no credentials went to the changed bastion
    assert jump_pair.target.connections() == target       # and nothing went on to the target


def test_orch_trust_records_the_bastion_key_naming_the_hop_then_the_instance_key(jump_pair, tmp_path):
    known = tmp_path / "known_hosts"
    inventory = project(jump_pair, tmp_path, known_hosts=str(known))
    first = run(inventory, "preflight", "--instance", "behind", "--json")
    assert first.code == 1 and "host key of bastion 127.0.0.1" in checks(first)["host key"]["detail"]
    trusted = run(inventory, "trust", "--instance", "behind", "--json")
    assert trusted.code == 0, trusted.stderr
    doc = trusted.json()
    assert doc["fingerprint"] == jump_pair.target.host_key_fingerprint() and doc["hop"] is None
    assert [(h["hop"], h["fingerprint"], h["status"]) for h in doc["hops"]] == \
        [("bastion", jump_pair.bastion.host_key_fingerprint(), "added")]
    assert known.read_text() == jump_pair.known_hosts.read_text()    # both entries, as OpenSSH writes them
    human = run(inventory, "trust", "--instance", "behind")
    assert f"behind (bastion 127.0.0.1:{jump_pair.bastion.port})" in human.stderr and "already recorded" in human.stderr
    assert run(inventory, "preflight", "--instance", "behind").code == 0


def test_a_bastion_that_refuses_the_key_or_is_down_is_named_in_the_error(jump_pair, tmp_path):
    inventory = project(jump_pair, tmp_path)
    authorized = jump_pair.bastion.dir / "authorized_keys"
    authorized.write_text(Path(f"{jump_pair.bastion.client_key}.pub").read_text())   # not the pair's key
    r = run(inventory, "preflight", "--instance", "behind", "--json")
    assert r.code == 1
    login = checks(r)["login"]["detail"]
    assert f"behind: bastion {jump_pair.bastion.user}@127.0.0.1:{jump_pair.bastion.port} refused the key " \
           f"{jump_pair.key}" in login
    jump_pair.bastion.stop()
    down = run(inventory, "preflight", "--instance", "behind", "--json")
    assert down.code == 1
    assert f"connection refused by bastion 127.0.0.1:{jump_pair.bastion.port}" in checks(down)["reachable"]["detail"]


def test_a_silent_bastion_is_noticed_within_the_keepalive_bound(jump_pair, tmp_path):
    import signal

    from orchestrator.errors import RemoteError
    from orchestrator.inventory import load_inventory
    from orchestrator.transport import connect

    inventory = project(jump_pair, tmp_path, server_alive_interval=1, server_alive_count_max=2)
    instance = load_inventory(inventory).instance("behind")
    with connect(instance) as transport:
        assert transport.run(["true"]).ok
        frozen = sorted(jump_pair.bastion.connection_pids())
        assert frozen
        for pid in frozen:        # the bastion stops answering, its TCP connection stays open: a dead link
            for p in [pid, *_descendants(pid)]:
                os.kill(p, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(RemoteError):
                transport.run(["sleep", "60"])
            took = time.monotonic() - started
        finally:
            for pid in frozen:
                for p in [pid, *_descendants(pid)]:
                    os.kill(p, signal.SIGCONT)
    assert took < 1 * (2 + 1) + 3, f"noticed after {took:.1f} s"


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


# ---------------------------------------------------------------------- ~/.ssh/config, agent, encrypted keys

def test_an_ssh_config_alias_resolves_user_port_key_and_proxyjump_and_show_names_each_line(jump_pair, tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    config = home / ".ssh" / "config"
    config.write_text(jump_pair.ssh_config("gpu-behind", "bastion", key="~/.ssh/id_pair"))
    (home / ".ssh" / "id_pair").write_bytes(jump_pair.key.read_bytes())
    os.chmod(home / ".ssh" / "id_pair", 0o600)
    work, models = jump_pair.target.remote_dirs("alias")
    inventory = write_inventory(tmp_path, {"alias": {
        "host": "gpu-behind", "known_hosts": str(jump_pair.known_hosts), "work_dir": work, "models_dir": models,
        "imds_url": "", "expect": {"gpu": None, "min_free_disk_gb": 0.001, "min_free_tmp_gb": 0.001}}})
    env = {"HOME": str(home)}
    shown = run(inventory, "show", "--instance", "alias", "--json", env=env)
    assert shown.code == 0, shown.stderr
    doc = shown.json()
    settings, origins = doc["instance"], doc["origins"]
    assert (settings["host"], settings["port"], settings["user"]) == \
        ("127.0.0.1", jump_pair.target.port, jump_pair.target.user)
    assert settings["key"] == str(home / ".ssh" / "id_pair") and settings["jump"] == ["bastion"]
    assert settings["identities_only"] is True
    lines = list(enumerate(config.read_text().splitlines(), 1))
    for name, keyword in (("host", "HostName"), ("port", "Port"), ("user", "User"), ("key", "IdentityFile"),
                          ("jump", "ProxyJump")):
        line = next(i for i, text in lines if text.strip().startswith(keyword + " "))   # the alias's block
        assert origins[name] == f"~/.ssh/config:{line} (Host gpu-behind)", (name, origins[name])
    assert origins["ssh_config"] == "default (~/.ssh/config exists)"
    assert doc["instance"]["hops"][0]["port"] == jump_pair.bastion.port   # the bastion alias resolved too
    assert doc["instance"]["hops"][0]["origins"]["port"].startswith("~/.ssh/config:")
    r = run(inventory, "preflight", "--instance", "alias", "--json", env=env)
    assert r.code == 0, r.stdout + r.stderr
    # bare OpenSSH makes the same of the same file (it expands ~ from /etc/passwd, not $HOME: hence -i; the
    # bastion's hop, a second ssh, takes it from the file alone, so it is written in absolute form there)
    config.write_text(config.read_text().replace("~/.ssh/id_pair", str(home / ".ssh" / "id_pair")))
    ssh = subprocess.run(["ssh", "-F", str(config), "gpu-behind", "true"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert ssh.returncode == 0, ssh.stderr
    # the inventory's own value wins over the file's; without the file the alias means nothing
    raw = __import__("yaml").safe_load(inventory.read_text())
    raw["instances"]["alias"]["port"] = 2222
    inventory.write_text(__import__("yaml").safe_dump(raw))
    mine = run(inventory, "show", "--instance", "alias", "--json", env=env).json()
    assert mine["instance"]["port"] == 2222 and "instances.alias.port" in mine["origins"]["port"]
    assert mine["instance"]["host"] == "127.0.0.1"
    gone = run(inventory, "show", "--instance", "alias", env={"HOME": str(tmp_path / "nohome")})
    assert gone.code == 2 and "`user` is required" in gone.stderr


def test_an_ssh_agent_holding_the_only_key_logs_in_to_both_hops_and_is_never_forwarded(jump_pair, tmp_path):
    from orchestrator.inventory import load_inventory
    from orchestrator.transport import connect

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and agent.poll() is None, "ssh-agent did not start"
            time.sleep(0.02)
        only = tmp_path / "only_key"
        only.write_bytes(jump_pair.key.read_bytes())
        os.chmod(only, 0o600)
        env = {"SSH_AUTH_SOCK": str(sock)}
        added = subprocess.run(["ssh-add", str(only)], env={**os.environ, **env}, capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        only.unlink()                                  # the agent holds the only copy
        inventory = project(jump_pair, tmp_path, key=None)
        r = run(inventory, "preflight", "--instance", "behind", "--json", env=env)
        assert r.code == 0, r.stdout + r.stderr
        without = run(inventory, "preflight", "--instance", "behind", env={"SSH_AUTH_SOCK": ""})
        assert without.code == 2 and "no ssh-agent is running" in without.stderr
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            with connect(load_inventory(inventory).instance("behind")) as transport:
                remote_env = transport.run(["env"]).text
        finally:
            os.environ.pop("SSH_AUTH_SOCK") if old is None else os.environ.update(SSH_AUTH_SOCK=old)
        assert "SSH_AUTH_SOCK" not in remote_env       # agent forwarding stays off
    finally:
        agent.terminate()
        agent.wait(10)


def test_an_encrypted_key_opens_with_the_passphrase_from_env_and_a_wrong_one_is_exit_2_naming_the_file(
        jump_pair, tmp_path):
    key = tmp_path / "id_locked"
    passphrase = "correct horse battery " + os.urandom(4).hex()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "locked", "-f", str(key)], check=True)
    for server in (jump_pair.bastion, jump_pair.target):
        server.authorize(Path(f"{key}.pub"))
    inventory = project(jump_pair, tmp_path, env={"QWEN_KEY_PASSPHRASE": passphrase}, key=str(key),
                        key_passphrase="${QWEN_KEY_PASSPHRASE}")
    r = run(inventory, "preflight", "--instance", "behind", "--json")
    assert r.code == 0, r.stdout + r.stderr
    shown = run(inventory, "show", "--instance", "behind")
    assert passphrase not in shown.stdout + shown.stderr and "QWEN_KEY_PASSPHRASE" in shown.stderr
    (tmp_path / ".env").write_text("QWEN_KEY_PASSPHRASE=not-the-passphrase\n")
    logins = jump_pair.bastion.logins()
    wrong = run(inventory, "preflight", "--instance", "behind")
    assert wrong.code == 2
    assert f"wrong passphrase for SSH key {key}" in wrong.stderr and "QWEN_KEY_PASSPHRASE in" in wrong.stderr
    assert "not-the-passphrase" not in wrong.stderr
    assert jump_pair.bastion.logins() == logins       # refused before anything connected
    (tmp_path / ".env").write_text("")
    missing = run(inventory, "preflight", "--instance", "behind")
    assert missing.code == 2 and "QWEN_KEY_PASSPHRASE" in missing.stderr


def test_jumps_naming_inventory_instances_and_ssh_config_values_are_checked_where_written(tmp_path):
    from orchestrator.errors import InputError
    from orchestrator.inventory import load_inventory

    base = {"host": "203.0.113.10", "user": "ubuntu", "key": "k.pem", "work_dir": "/w", "models_dir": "/m",
            "ssh_config": False}
    inventory = write_inventory(tmp_path, {
        "gate": {**base, "host": "203.0.113.5", "port": 2222, "user": "jump"},
        "gpu": {**base, "jump": ["gate", "ops@203.0.113.6"]},
        "loop": {**base, "jump": "loop"},
        "bad": {**base, "jump": ["-oProxyCommand=evil"]}})
    inv = load_inventory(inventory)
    hops = inv.instance("gpu").hops
    assert [(h.role, h.user, h.host, h.port) for h in hops] == \
        [("bastion gate", "jump", "203.0.113.5", 2222), ("bastion 2", "ops", "203.0.113.6", 22)]
    assert re.search(r"inventory\.yaml:\d+ \(instances\.gpu\.jump\)", hops[1].origin("host"))
    for name in ("loop", "bad"):
        with pytest.raises(InputError, match="jump"):
            inv.instance(name)


def test_an_encrypted_key_without_a_passphrase_setting_is_asked_for_once_on_a_terminal(jump_pair, tmp_path):
    import pty
    import sys

    key = tmp_path / "id_locked"
    passphrase = "typed-" + os.urandom(4).hex()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)], check=True)
    for server in (jump_pair.bastion, jump_pair.target):
        server.authorize(Path(f"{key}.pub"))
    inventory = project(jump_pair, tmp_path, key=str(key))
    batch = run(inventory, "preflight", "--instance", "behind")      # no terminal: no prompt, a clear refusal
    assert batch.code == 2 and f"SSH key {key} is protected by a passphrase" in batch.stderr
    assert "key_passphrase" in batch.stderr
    pid, fd = pty.fork()
    if pid == 0:       # the child: orch on a terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "orchestrator", "--inventory", str(inventory), "preflight",
                                   "--instance", "behind"], {**os.environ, "PYTHONPATH": str(ROOT)})
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"passphrase for" not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(fd, 4096)
        os.write(fd, passphrase.encode() + b"\n")
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:      # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert text.count("passphrase for") == 1       # one key file for both hops: asked once
    assert "behind: ready" in text and passphrase not in text


def test_ssh_config_values_follow_openssh_first_match_wins_and_a_missing_file_named_is_bad_input(tmp_path):
    from orchestrator.errors import InputError
    from orchestrator.inventory import load_inventory

    (tmp_path / "cfg").write_text("Host gpu-* !gpu-old\n  User ubuntu\n  ServerAliveInterval 7\n"
                                  "Host gpu-a\n  HostName 203.0.113.10\n  User ignored-second\n"
                                  "Host *\n  Port 2200\n  ServerAliveCountMax 5\n  ProxyJump none\n")
    base = {"work_dir": "/w", "models_dir": "/m", "key": "k.pem", "ssh_config": "cfg"}
    inventory = write_inventory(tmp_path, {"a": {**base, "host": "gpu-a"},
                                           "old": {**base, "host": "gpu-old", "user": "ec2-user"},
                                           "missing": {**base, "host": "gpu-a", "ssh_config": "nope"}})
    inv = load_inventory(inventory)
    a = inv.instance("a")
    assert (a.host, a.user, a.port, a.server_alive_interval, a.server_alive_count_max, a.jump) == \
        ("203.0.113.10", "ubuntu", 2200, 7.0, 5, [])
    assert a.origin("user") == f"{tmp_path}/cfg:2 (Host gpu-* !gpu-old)"
    assert a.origin("host") == f"{tmp_path}/cfg:5 (Host gpu-a)"
    old = inv.instance("old")            # negated out of the first block; its own user from the inventory
    assert (old.host, old.user, old.server_alive_interval) == ("gpu-old", "ec2-user", 15.0)
    with pytest.raises(InputError, match=r"ssh config .*nope does not exist"):
        inv.instance("missing")
