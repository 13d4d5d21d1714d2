"""CLI commands, one module per area, each registering itself on `orchestrator.cli.cli`:
`preflight_cmd` (preflight, trust), `weights_cmd` (sync-weights), `plan_cmd` (plan), `lifecycle_cmd` (deploy,
train, status, logs, stop, fetch-adapter, eval), `validators_cmd` (validators install, validators check),
`export_cmd` (export), `serve_cmd` (serve [up], serve status|logs|stop|bench), `tunnel_cmd` (tunnel).
`cli._register_commands` imports every module of this package. Pattern:

    from ..cli import App, cli, common

    @cli.command()
    @click.argument("job", required=False)
    @click.option("--instance")
    @common
    def preflight(app: App, job, instance): ...
"""
