"""The MovieLens yes/no system on CPU: the tiny Qwen3 trained in 4-bit with tiny-movielens answers held-out users
correctly while its untuned base is near chance; evaluation during training scores greedy answers exactly as
the evaluate command does; early stopping ends the run once eval F1 stops improving, the adapter saved is the
best step's, and a resumed run keeps its best-so-far and its patience."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from tests.conftest_payload import MOVIELENS, call_main, read_jsonl  # noqa: E402

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning"),
]


def evaluate(run, capsys, *argv) -> tuple[int, dict]:
    from remote_payload import evaluate as module

    out = run.run_dir.parent / "evaluate.json"
    code = call_main(module.main, ["--model-dir", str(run.model_dir), "--adapter", str(run.adapter), "--out",
                                   str(out), "--json", *argv])
    printed = capsys.readouterr().out
    return code, json.loads(printed) if code in (0, 1) else {"stderr": printed}


def adapter_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def evals_of(run_dir) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "eval"]


def test_the_tuned_model_answers_held_out_users_while_its_base_is_near_chance(movielens_run, capsys):
    assert movielens_run.exit_code == 0
    code, report = evaluate(movielens_run, capsys, "--data", str(MOVIELENS["test"]), "--compare-base")
    tuned, base = report["metrics"], report["base"]["metrics"]
    print(f"\ntuned: accuracy {tuned['accuracy']:.3f} F1 {tuned['f1']:.3f}; base: accuracy {base['accuracy']:.3f} "
          f"(unparseable {base['unparseable']}/200), forced choice {base['choice_accuracy']:.3f}; "
          f"training run {movielens_run.seconds:.0f}s")
    assert code == 0 and report["passed"] and report["samples"] == 200
    assert tuned["accuracy"] >= 0.9 and tuned["f1"] >= 0.9 and tuned["unparseable"] == 0
    assert sum(tuned["confusion"][k] for k in ("tp", "fp", "tn", "fn")) == 200
    # the random base never writes Yes/No; scored on the label words' first tokens it is a coin flip
    assert base["accuracy"] <= 0.6 and 0.3 <= base["choice_accuracy"] <= 0.7
    differ = report["disagreements"]
    assert differ["count"] >= 100 and differ["tuned_right_base_wrong"] >= 90
    first = differ["examples"][0]
    assert {"source", "user_id", "candidate_title", "label", "base", "tuned", "base_text", "tuned_text"} <= set(first)


def test_early_stopping_ends_the_run_once_eval_f1_plateaus_and_the_adapter_is_the_best_steps(movielens_run):
    record = movielens_run.run_json()
    best, training, evals = record["best"], record["training"], evals_of(movielens_run.run_dir)
    assert training["early_stopped"] and training["global_step"] < 600
    assert best["metric"] == "f1" and best["value"] == 1.0 and best["restored"]
    assert [e["step"] for e in evals] == list(range(50, training["global_step"] + 1, 50))
    assert evals[-1]["step"] == best["step"] + 3 * 50          # patience 3: three evaluations without a new best
    assert max(e["eval_f1"] for e in evals) == best["value"]
    assert min(e["step"] for e in evals if e["eval_f1"] == best["value"]) == best["step"]
    checkpoints = movielens_run.run_dir / "checkpoints"
    assert best["checkpoint"] == f"checkpoint-{best['step']}"
    saved, at_best = adapter_tensors(movielens_run.adapter), adapter_tensors(checkpoints / best["checkpoint"])
    last = adapter_tensors(checkpoints / f"checkpoint-{training['global_step']}")
    assert saved.keys() == at_best.keys() and all((saved[k] == at_best[k]).all() for k in saved)
    assert any(not (saved[k] == last[k]).all() for k in saved)  # not the last step's weights


def test_training_time_metrics_equal_the_evaluate_commands_on_the_same_samples(movielens_run, capsys):
    best = movielens_run.run_json()["best"]
    code, report = evaluate(movielens_run, capsys, "--job", str(movielens_run.bundle / "job.json"),
                            "--samples", "96")
    assert code == 0
    for name in ("accuracy", "f1", "precision", "recall", "unparseable", "choice_accuracy"):
        assert report["metrics"][name] == best["metrics"][name], name
    during = json.loads((movielens_run.run_dir / "evals" / f"step-{best['step']}.json").read_text())
    assert [(a["source"], a["text"], a["prediction"]) for a in report["predictions"]] == \
        [(a["source"], a["text"], a["prediction"]) for a in during["answers"]]


def test_tensorboard_gets_eval_accuracy_f1_and_loss_at_every_evaluation(movielens_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(movielens_run.run_dir / "tensorboard"))
    events.Reload()
    steps = [e["step"] for e in evals_of(movielens_run.run_dir)]
    for tag in ("eval/accuracy", "eval/f1", "eval/loss", "eval/precision", "eval/recall"):
        assert [e.step for e in events.Scalars(tag)] == steps, tag
    assert events.Scalars("train/loss")


def test_run_json_records_the_best_step_the_attention_choice_and_the_evaluation(movielens_run):
    record = movielens_run.run_json()
    assert record["attention"] == {"requested": "auto", "chosen": "sdpa",
                                   "reason": "no flash_attention_2: device is cpu"}
    assert record["recipe"]["task"] == "classification" and record["style_tokens"] is None
    assert record["dataset"]["by_label"] == {"No": 480, "Yes": 480}
    assert record["eval_dataset"]["by_label"] == {"No": 48, "Yes": 48}
    assert record["dataset"]["cache"]["hit"] is False and len(record["dataset"]["cache"]["key"]) == 32
    assert record["eval"]["task"] == "classification" and record["eval"]["passed"]
    assert record["eval"]["accuracy"] == record["best"]["metrics"]["accuracy"]
    meta = json.loads((movielens_run.adapter / "payload_meta.json").read_text())
    assert meta["task"] == "classification" and meta["attention"]["chosen"] == "sdpa"
    config = json.loads((movielens_run.adapter / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] is None and config["modules_to_save"] is None


def test_a_resumed_run_keeps_its_best_so_far_and_its_early_stopping_count(movielens_run, tmp_path, capsys):
    from remote_payload import train

    before = movielens_run.run_json()
    run_dir = shutil.copytree(movielens_run.run_dir, tmp_path / "runs" / "movielens-run")
    shutil.rmtree(run_dir / "adapter")
    code = call_main(train.main, ["--job", str(movielens_run.bundle / "job.json"), "--model-dir",
                                  str(movielens_run.model_dir), "--run-dir", str(run_dir), "--resume",
                                  "--clear-cache"])
    out = capsys.readouterr().out
    assert code == 0, out[-2000:]
    assert "cleared the tokenized-data cache" in out
    after = json.loads((run_dir / "run.json").read_text())
    stop = before["training"]["global_step"]
    # the patience count came back (3 already): the first evaluation after resuming ends the run
    assert after["training"]["start_step"] == stop and after["training"]["global_step"] == stop + 50
    assert after["training"]["early_stopped"]
    assert (after["best"]["step"], after["best"]["value"]) == (before["best"]["step"], before["best"]["value"])
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{stop + 50}" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == str(run_dir / "checkpoints" / before["best"]["checkpoint"])
    saved, at_best = adapter_tensors(run_dir / "adapter"), adapter_tensors(movielens_run.adapter)
    assert all((saved[k] == at_best[k]).all() for k in saved)


def test_the_tensorboard_command_serves_a_jobs_runs_on_loopback_until_its_stdin_closes(movielens_run):
    import os
    import subprocess
    import time
    import urllib.request

    from tests.conftest_payload import CHILD_ENV, payload_command

    runs_dir = movielens_run.run_dir.parent
    board = subprocess.Popen(payload_command("board", "--runs-dir", str(runs_dir), "--job", "movielens"),
                             cwd=movielens_run.bundle, env={**os.environ, **CHILD_ENV}, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started = json.loads(board.stdout.readline())
        assert started["host"] == "127.0.0.1" and started["url"].startswith(f"http://127.0.0.1:{started['port']}")
        assert [r["run_id"] for r in started["runs"]] == ["movielens-run"]
        deadline, tags = time.monotonic() + 60, {}
        while "movielens-run/." not in tags and time.monotonic() < deadline:   # TensorBoard loads in the background
            with urllib.request.urlopen(f"{started['url'].rstrip('/')}/data/plugin/scalars/tags", timeout=30) as r:
                tags = json.loads(r.read())
        assert {"eval/accuracy", "eval/f1", "eval/loss", "train/loss"} <= set(tags["movielens-run/."])
        board.stdin.close()                      # the SSH session ends: the server goes with it
        assert board.wait(timeout=30) == 0
    finally:
        if board.poll() is None:
            board.kill()
    missing = subprocess.run(payload_command("board", "--runs-dir", str(runs_dir), "--job", "nojob"),
                             cwd=movielens_run.bundle, capture_output=True, text=True, timeout=60,
                             env={**os.environ, **CHILD_ENV}, stdin=subprocess.DEVNULL)
    assert missing.returncode == 2 and "no TensorBoard logs for job nojob" in missing.stderr


def test_seqlen_walks_a_movielens_example_through_record_messages_template_and_tokens(movielens_run, capsys):
    from remote_payload import seqlen

    job = str(movielens_run.bundle / "job.json")
    assert call_main(seqlen.main, ["--job", job, "--model-dir", str(movielens_run.model_dir), "--eval",
                                   "--show-examples", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "classification" and report["examples"] == 96 and report["over_cutoff"] == 0
    walk = report["walk_through"][0]
    assert walk["source"] == "movielens_demo_eval.jsonl:1" and walk["record"]["output"] in ("Yes", "No")
    assert [m["role"] for m in walk["messages"]] == ["system", "user", "assistant"]
    assert walk["rendered"].endswith(f"<think>\n\n</think>\n\n{walk['record']['output']}<|im_end|>")
    assert walk["masked"] + walk["trained"] == walk["tokens"] and walk["trained"] == 3   # Y + es/o + <|im_end|>
