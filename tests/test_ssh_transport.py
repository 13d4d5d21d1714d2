"""The SSH transport against a real OpenSSH sshd: quoting, one reused connection, binary streams,
timeouts that really stop the remote command, and failures that say what to fix."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from orchestrator.errors import InputError, RemoteError
from orchestrator.inventory import Instance
from orchestrator.transport import connect
from orchestrator.transport.local import LocalTransport
from orchestrator.transport.ssh import ConnectionLost, SshTransport, command_line
from tests.conftest import orch
from tests.fixtures.sshd import closed_port, sshd, write_inventory  # noqa: F401  (fixtures)


def instance_for(server, name: str = "box", **fields) -> Instance:
    entry = server.instance(name)
    entry.pop("expect")
    entry.update(fields)
    entry["imds_url"] = entry["imds_url"] or None
    return Instance(name=name, **entry)


@pytest.fixture
def transport(sshd):  # noqa: F811
    t = connect(instance_for(sshd))
    yield t
    t.close()


def remote_pids(pattern: str) -> str:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------- commands

def test_values_with_spaces_quotes_globs_and_dollar_signs_reach_the_command_unchanged(transport):
    hostile = ["a b", "it's", '"double"', "$(touch /tmp/pwned)", "`id`", "*", "x;y", "$HOME", "\\n", ""]
    result = transport.run(["printf", "%s\\n", *hostile])
    assert result.text.split("\n")[:-1] == hostile
    assert not os.path.exists("/tmp/pwned")


def test_env_values_and_the_working_directory_are_passed_quoted(transport, sshd):  # noqa: F811
    work, _ = sshd.remote_dirs("with space " + uuid.uuid4().hex[:6])
    result = transport.run(["sh", "-c", 'printf "%s|%s" "$GREETING" "$(pwd)"'], env={"GREETING": "hi there; $(id)"},
                           cwd=work)
    assert result.text == f"hi there; $(id)|{work}"


def test_an_environment_variable_name_that_could_inject_shell_is_refused():
    with pytest.raises(InputError):
        command_line(["true"], env={"A=1 B": "x"})


def test_a_failing_command_raises_a_remote_error_naming_instance_command_and_stderr(transport):
    with pytest.raises(RemoteError) as err:
        transport.run(["sh", "-c", "echo first >&2; echo 'disk is full' >&2; exit 3"])
    assert err.value.message.startswith("box: `sh` exited with 3")
    assert "disk is full" in err.value.message
    result = transport.run(["sh", "-c", "exit 4"], check=False)
    assert result.exit_code == 4 and not result.ok


def test_every_command_reuses_one_connection_and_counts_its_round_trips(sshd):  # noqa: F811
    before = sshd.connections()
    t = connect(instance_for(sshd))
    try:
        for i in range(5):
            assert t.run(["echo", str(i)]).text == f"{i}\n"
        proc = t.open(["cat"])
        proc.close_stdin()
        assert proc.wait(10) == 0
        assert t.commands_run == 6
    finally:
        t.close()
    assert sshd.wait_for(lambda: sshd.connections() - before, 1) == 1


def test_the_connection_disables_nagle_so_small_writes_do_not_wait_for_delayed_acks(transport):
    sock = transport._transport.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert transport._transport.local_cipher == "aes128-gcm@openssh.com"   # the fastest paramiko offers


def test_stdin_larger_than_the_ssh_window_is_delivered_whole(transport):
    data = os.urandom(9 * 1024 * 1024)
    result = transport.run(["sha256sum"], stdin=data)
    assert result.text.split()[0] == hashlib.sha256(data).hexdigest()


def test_a_binary_stream_survives_the_round_trip_byte_for_byte(transport):
    data = os.urandom(20 * 1024 * 1024) + b"\x00\r\n\xff" * 1000
    proc = transport.open(["cat"])
    writer = threading.Thread(target=lambda: (proc.write(data), proc.close_stdin()))
    writer.start()
    received = bytearray()
    while chunk := proc.read(1 << 20):
        received += chunk
    writer.join()
    assert proc.wait(30) == 0
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()


def test_a_process_reads_lines_and_reports_its_exit_code_and_stderr(transport):
    proc = transport.open(["sh", "-c", "echo one; echo two; echo oops >&2; exit 5"])
    assert proc.readline() == b"one\n"
    assert proc.read() == b"two\n"
    assert proc.read() == b""
    assert proc.wait(10) == 5
    assert proc.stderr_text() == "oops\n"


def test_stderr_written_after_a_quiet_spell_is_kept_when_reads_have_a_timeout(transport):
    """set_timeout also times out the stderr reader (one timeout per channel): a quiet stderr is not its end."""
    from orchestrator.transport.base import Stalled

    proc = transport.open(["sh", "-c", "echo early >&2; read go; echo late >&2; echo done"])
    proc.set_timeout(0.2)
    deadline = time.monotonic() + 30
    while proc.stderr_text() != "early\n":
        assert time.monotonic() < deadline, proc.stderr_text()
        try:
            proc.read()
        except Stalled:
            pass
    for _ in range(2):                      # two timeouts in a row: the stderr reader has timed out too
        with pytest.raises(Stalled):
            proc.read()
    proc.write(b"go\n")
    proc.set_timeout(30)
    assert proc.readline() == b"done\n"
    assert proc.wait(10) == 0
    assert proc.stderr_text() == "early\nlate\n"


def test_a_command_past_its_timeout_raises_and_is_killed_on_the_instance(transport):
    marker = f"orch-timeout-{uuid.uuid4().hex}"
    started = time.monotonic()
    with pytest.raises(RemoteError) as err:
        transport.run(["sh", "-c", f"exec sleep 30 # {marker}", marker], timeout=0.5)
    assert time.monotonic() - started < 5
    assert "did not finish within 0.5 s" in err.value.message
    deadline = time.monotonic() + 5
    while remote_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote_pids(marker) == ""
    assert transport.run(["echo", "still usable"]).text == "still usable\n"


def test_kill_stops_a_streaming_command_on_the_instance(transport):
    marker = f"sleep 30.{uuid.uuid4().int % 10**9:09d}"     # a command line no other process has
    proc = transport.open(["sh", "-c", f"exec {marker}"])
    deadline = time.monotonic() + 5
    while not remote_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote_pids(marker), "the command never started"
    proc.kill()
    assert proc.wait(5) != 0
    deadline = time.monotonic() + 5
    while remote_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remote_pids(marker) == "", "the command still runs on the instance after kill()"


def test_closing_the_connection_mid_stream_raises_connection_lost_instead_of_a_short_read(sshd):  # noqa: F811
    t = connect(instance_for(sshd))
    proc = t.open(["head", "-c", str(200 * 1024 * 1024), "/dev/zero"])
    assert len(proc.read(1024)) > 0
    t.close()
    with pytest.raises(ConnectionLost, match="connection was lost while `head` was running"):
        while proc.read(1 << 20):
            pass


def test_a_connection_the_server_drops_mid_stream_raises_connection_lost(sshd):  # noqa: F811
    before = sshd.connection_pids()
    t = connect(instance_for(sshd))
    [child] = sshd.connection_pids() - before          # the sshd process serving this connection
    proc = t.open(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 5"])
    received = 0
    while received < 100000:
        received += len(proc.read(1 << 20))
    sshd.drop(child)                     # the server side of this connection dies
    with pytest.raises(ConnectionLost):
        while proc.read(1 << 20):
            pass
    t.close()


def test_a_process_wait_with_a_timeout_raises_timeout_expired_like_the_local_transport(transport):
    proc = transport.open(["sleep", "5"])
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    proc.kill()


def test_connect_gives_a_local_transport_for_local_instances(tmp_path):
    local = Instance(name="local", transport="local", work_dir=str(tmp_path / "w"), models_dir=str(tmp_path / "m"))
    t = connect(local)
    assert isinstance(t, LocalTransport)
    assert t.run(["echo", "x"]).text == "x\n"


# ---------------------------------------------------------------------- failures that say what to fix

def test_a_refused_key_names_the_key_file_and_the_user(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box", key=str(sshd.wrong_key))
    inventory = write_inventory(tmp_path, {"box": entry})
    run = orch("--inventory", str(inventory), "preflight", "--instance", "box", "--json")
    assert run.code == 1 and "Traceback" not in run.stderr
    checks = {c["name"]: c for c in run.json()["instances"][0]["checks"]}
    assert checks["reachable"]["ok"] and checks["host key"]["ok"]
    login = checks["login"]
    assert not login["ok"]
    assert f"{sshd.user}@127.0.0.1:{sshd.port} refused the key {sshd.wrong_key}" in login["detail"]
    assert "instances.box.key" in login["fix"] and "instances.box.user" in login["fix"]


def test_a_missing_key_file_is_bad_input_exits_2_and_names_the_variable_it_came_from(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box", key="${SSH_KEY_PATH}")
    missing = tmp_path / "keys" / "absent.pem"
    inventory = write_inventory(tmp_path, {"box": entry}, env={"SSH_KEY_PATH": str(missing)})
    connections = sshd.connections()
    run = orch("--inventory", str(inventory), "preflight", "--instance", "box")
    assert run.code == 2 and "Traceback" not in run.stderr
    assert f"SSH key file {missing} does not exist" in run.stderr
    assert "SSH_KEY_PATH in " in run.stderr
    assert sshd.connections() == connections     # no network before the input is known to be good


def test_a_closed_port_raises_a_remote_error_naming_host_and_port(sshd):  # noqa: F811
    port = closed_port()
    with pytest.raises(RemoteError) as err:
        connect(instance_for(sshd, port=port))
    assert err.value.message == f"box: connection refused by 127.0.0.1:{port} (nothing listens on that port)"
    assert "instances.box.port in the inventory" in err.value.hint


def test_a_port_that_answers_but_not_with_ssh_is_reported_as_not_an_ssh_server(sshd):  # noqa: F811
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        conn, _ = server.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(RemoteError) as err:
            connect(instance_for(sshd, port=server.getsockname()[1]), connect_timeout=2)
    finally:
        server.close()
    assert "did not answer as an SSH server" in err.value.message


def test_a_port_that_never_answers_times_out_within_the_connect_timeout(sshd):  # noqa: F811
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()           # accepts (kernel backlog) but never says a word
    started = time.monotonic()
    try:
        with pytest.raises(RemoteError) as err:
            SshTransport(instance_for(sshd, port=server.getsockname()[1]), connect_timeout=0.5).connect()
    finally:
        server.close()
    assert time.monotonic() - started < 3
    assert "127.0.0.1" in err.value.message


def test_a_forwarded_port_reaches_a_server_bound_to_the_instances_loopback_through_the_one_connection(sshd):  # noqa: F811
    import http.server

    from orchestrator.transport.forward import Forward

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello from {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = sshd.connections()
    t = connect(instance_for(sshd))
    try:
        with Forward(t, server.server_address[1]) as fwd:
            import urllib.request

            for path in ("/a", "/b", "/c"):
                with urllib.request.urlopen(f"http://127.0.0.1:{fwd.local_port}{path}", timeout=10) as r:
                    assert r.read() == f"hello from {path}".encode()
            assert fwd.connections == 3
    finally:
        t.close()
        server.shutdown()
    assert sshd.wait_for(lambda: sshd.connections() - before, 1) == 1     # three requests, one SSH connection
