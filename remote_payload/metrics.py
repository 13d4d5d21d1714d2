"""`RUN/metrics.jsonl`: one JSON object per logging step, appended and flushed so the controller can tail it.

Step records: {"event": "step", "attempt", "step", "epoch", "loss", "learning_rate", "grad_norm",
"samples_per_second", "tokens_per_second", "elapsed_seconds", "time"}. Every attempt (the first run, each
`--resume`) opens with {"event": "attempt", "attempt": N, "start_step": S}: a resumed run appends to the same
file, and steps after S that the killed attempt had logged appear again under the new attempt number, so a
reader keeps, for each step, the record of the highest attempt. Evaluations during training add
{"event": "eval", "attempt", "step", "eval_loss", and the task's metrics: "eval_accuracy", "eval_f1", ...}.
The last record of a finished run is {"event": "train_end", ...} with the Trainer's summary (train_loss,
train_runtime, ...).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

from .runrecord import utc_now


def _number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; the controller sees null
    return value


class MetricsJsonl(TrainerCallback):
    """Trainer callback appending a line per `on_log`, and printing a short human line to stdout."""

    def __init__(self, path: Path, samples_per_step: int, attempt: int = 1):
        self.path = path
        self.samples_per_step = samples_per_step
        self.attempt = attempt
        self._start = time.monotonic()
        self._last = (self._start, None, 0)   # (time, step, tokens seen)

    def _rates(self, step: int, tokens: int) -> tuple[float | None, float | None]:
        then, last_step, last_tokens = self._last
        now = time.monotonic()
        self._last = (now, step, tokens)
        if last_step is None or step <= last_step or now <= then:
            return None, None
        seconds = now - then
        return (round((step - last_step) * self.samples_per_step / seconds, 3),
                round((tokens - last_tokens) / seconds, 1) if tokens else None)

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.monotonic(), state.global_step, state.num_input_tokens_seen or 0)
        self._append({"event": "attempt", "attempt": self.attempt, "start_step": state.global_step,
                      "time": utc_now()})

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "loss" in logs:
            samples, tokens = self._rates(state.global_step, state.num_input_tokens_seen or 0)
            record = {"event": "step", "attempt": self.attempt, "step": state.global_step,
                      "epoch": _number(logs.get("epoch", state.epoch)),
                      "loss": _number(logs["loss"]), "learning_rate": _number(logs.get("learning_rate")),
                      "grad_norm": _number(logs.get("grad_norm")), "samples_per_second": samples,
                      "tokens_per_second": tokens}
            print(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                  f"lr {logs.get('learning_rate', 0):.2e} epoch {record['epoch'] or 0:.2f}", flush=True)
        elif "eval_loss" in logs:
            record = {"event": "eval", "attempt": self.attempt, "step": state.global_step,
                      **{k: _number(v) for k, v in logs.items()}}
            shown = " ".join(f"{k[5:]} {v:.4f}" for k, v in logs.items()
                             if k.startswith("eval_") and isinstance(v, float) and "per_second" not in k
                             and "runtime" not in k)
            print(f"eval step {state.global_step}: {shown}", flush=True)
        elif "train_runtime" in logs:
            record = {"event": "train_end", "attempt": self.attempt, "step": state.global_step,
                      **{k: _number(v) for k, v in logs.items()}}
        else:
            return
        record.update(elapsed_seconds=round(time.monotonic() - self._start, 3), time=utc_now())
        self._append(record)
