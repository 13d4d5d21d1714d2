"""`orch recipes`: the built-in recipes a job (or a YAML recipe's `base:`) can name."""

from __future__ import annotations

from ..cli import App, cli, common
from ..output import emit_json, table


@cli.command()
@common
def recipes(app: App):
    """List the built-in recipes: name, task, description."""
    from remote_payload.recipes import recipe_summaries

    found = recipe_summaries()
    if app.json:
        emit_json({"ok": True, "recipes": found})
        return
    table("built-in recipes (remote_payload/recipes/)", ["name", "task", "description"],
          [(r["name"], r["task"], r["description"]) for r in found])
