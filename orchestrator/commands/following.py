"""Following a run's log on the terminal: the log streams to stdout (stderr with --json), a live step/loss
line stays at the bottom of a terminal, Ctrl-C stops following and never the run."""

from __future__ import annotations

import sys

from ..output import console, say


def follow_run(app, target, run_dir: str, run_id: str, offset: int = 0, follow: bool = True,
            transport=None, payload_dir: str | None = None, rank: int = 0) -> dict:
    """Stream the run's log (stdout, or stderr with --json) and a live metrics line, until it ends."""
    from ..runs import follow as stream
    from ..transport import connect

    first = [transport] if transport is not None else []

    def transport_factory():  # the open connection first; a new one after a drop
        return first.pop() if first else connect(target)

    out = sys.stderr if app.json else sys.stdout
    live = _LiveLine(enabled=not app.json and console().is_terminal)

    def on_log(text: str) -> None:
        live.clear()
        out.write(text)
        out.flush()
        live.draw()

    try:
        final, reached = stream(transport_factory, target, run_dir, offset=offset, follow=follow,
                                on_log=on_log, on_metric=live.update, payload_dir=payload_dir,
                                rank=rank)
    except KeyboardInterrupt:
        live.clear()
        say(f"stopped following; run {run_id} goes on. Re-attach: orch logs --run {run_id} --follow",
            style="yellow")
        sys.exit(130)
    live.clear()
    return {**final, "offset": reached}  # the log's byte offset reached: `orch logs --offset` resumes there


class _LiveLine:
    """One status line (step, loss, rate) kept at the bottom of a terminal while the log scrolls."""

    def __init__(self, enabled: bool):
        self.enabled, self.text = enabled, ""

    def update(self, metric: dict) -> None:
        if metric.get("event", "step") != "step":
            return                      # attempt markers and the final summary are not progress lines
        parts = [f"step {metric.get('step')}"]
        for key, fmt in (("epoch", "epoch {:.2f}"), ("loss", "loss {:.4f}"), ("samples_per_second", "{:.1f} samples/s"),
                         ("tokens_per_second", "{:.0f} tok/s")):
            if isinstance(metric.get(key), (int, float)):
                parts.append(fmt.format(metric[key]))
        self.clear()
        self.text = " | ".join(parts)
        self.draw()

    def draw(self) -> None:
        if self.enabled and self.text:
            sys.stderr.write(f"\r\x1b[2K\x1b[1m{self.text}\x1b[0m")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled and self.text:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

