"""`orch tunnel`: this machine's 127.0.0.1:PORT reaching what `orch serve` runs on the instance's 127.0.0.1 --
the /generate API (and with --vllm-port, vLLM's OpenAI server) -- over the one SSH connection
(transport/forward.py: direct-tcpip channels; nothing is opened on the instance). Runs until Ctrl-C."""

from __future__ import annotations

import time

import click

from ..cli import App, cli, common
from ..errors import InputError, RemoteError
from ..output import emit_json, say
from .session import connected

CHECK_S = 5.0            # how often the connection is checked while the tunnel is open


@cli.command("tunnel")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Local port for the /generate API (0: a free one).")
@click.option("--vllm-port", type=click.IntRange(0, 65535), help="Also forward vLLM's OpenAI server to this local "
                                                                  "port (0: a free one).")
@common
def tunnel(app: App, job, instance, port, vllm_port):
    """Forward local ports to the model `orch serve` serves on the instance, until Ctrl-C."""
    from ..serving import port_of, serve_action
    from ..transport.forward import Forward

    _, target = app.inventory.resolve(job, instance, need_job=False)
    with connected(target) as transport:
        served = serve_action(transport, target, "status")
        wanted = [("api", served["api_url"], port)] + ([("vllm", served["vllm_url"], vllm_port)]
                                                       if vllm_port is not None else [])
        forwards = {}
        try:
            for name, url, local in wanted:
                try:
                    forwards[name] = Forward(transport, port_of(url), local_port=local).start()
                except InputError as exc:
                    raise InputError(exc.message, hint="choose another port (0 picks a free one)") from None
            urls = {f"{name}_url": f"http://127.0.0.1:{fwd.local_port}" for name, fwd in forwards.items()}
            doc = {"ok": True, "instance": target.name, "served_name": served.get("served_name"),
                   "healthy": served.get("healthy"), **urls,
                   "remote": {name: url for name, url, _ in wanted}}
            if app.json:
                emit_json(doc)
            else:
                print(urls["api_url"], flush=True)
            say(f"{served.get('served_name')} on {target.name}: " + ", ".join(
                f"{name} at {u}" for name, u in urls.items()) + " -- Ctrl-C closes the tunnel", style="green")
            _hold(transport, target.name)
        except KeyboardInterrupt:
            say(f"closing the tunnel to {target.name}")
        finally:
            for fwd in forwards.values():
                fwd.stop()


def _hold(transport, where: str) -> None:
    """Until Ctrl-C; a dropped connection ends the tunnel with an error."""
    while True:
        time.sleep(CHECK_S)
        inner = getattr(transport, "_transport", "local")      # SshTransport's paramiko transport
        if inner is None or (inner != "local" and not inner.is_active()):
            raise RemoteError(f"{where}: the SSH connection was lost; the tunnel is closed",
                              hint="run `orch tunnel` again")
