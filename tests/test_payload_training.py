"""The tiny Qwen3, loaded in 4-bit nf4 on CPU and trained with the tiny-verbosity recipe, learns TERSE vs VERBOSE;
the run leaves a reloadable adapter, a manifest, run.json, metrics and checkpoints; a killed run resumes at the
right step with its optimizer; --extra-epochs extends a finished run."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import time

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from remote_payload.recipes import load_recipe  # noqa: E402
from tests.conftest_payload import (DEMO_DATASET, call_main, isolated_process_state, make_bundle,  # noqa: E402
                                    read_jsonl, run_payload, start_payload)

pytestmark = [
    pytest.mark.timeout(300),
    # third-party deprecations raised inside torch/transformers/peft, nothing the payload can act on
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning"),
]


def args_for(bundle, model_dir, run_dir, *extra):
    return ["--job", str(bundle / "job.json"), "--model-dir", str(model_dir), "--run-dir", str(run_dir), *extra]


def cosine_lr(step: int, total: int, base: float, warmup_ratio: float) -> float:
    """transformers' get_cosine_schedule_with_warmup at `step` (warmup = ceil(ratio * total))."""
    warmup = math.ceil(total * warmup_ratio)
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


# --- the session's demo run ----------------------------------------------------------------------------------

def test_the_demo_job_trains_in_4bit_and_verbose_answers_are_at_least_3x_longer(trained_run):
    assert trained_run.exit_code == 0
    record, report = trained_run.run_json(), trained_run.eval_json()
    assert record["status"] == "succeeded"
    assert record["parameters"]["loaded_in_4bit"] and record["parameters"]["linear4bit_layers"] == 14
    terse, verbose = report["styles"]["TERSE"]["mean_tokens"], report["styles"]["VERBOSE"]["mean_tokens"]
    print(f"\nTERSE {terse:.1f} tokens, VERBOSE {verbose:.1f} tokens, ratio {report['ratio']:.1f}, "
          f"training {record['timings']['train_seconds']:.1f}s, whole run {trained_run.seconds:.1f}s")
    assert report["ratio"] == pytest.approx(verbose / terse, rel=1e-3)
    assert report["ratio"] >= 3.0 and report["passed"] and report["prompts"] == 25
    # the presets are identical for both styles: the length difference is the model's own decision to stop
    assert report["styles"]["TERSE"]["preset"] == report["styles"]["VERBOSE"]["preset"] == \
        {"max_new_tokens": 96, "do_sample": False}
    assert report["styles"]["TERSE"]["hit_max_new_tokens"] == 0
    assert record["eval"]["ratio"] == report["ratio"]


def test_an_adapter_reloaded_on_a_fresh_base_reproduces_the_same_greedy_generations(trained_run):
    from remote_payload.evaluate import load_prompts, run_evaluation
    from remote_payload.modeling import load_for_inference

    with isolated_process_state():
        model, tokenizer, recipe, meta = load_for_inference(trained_run.model_dir, trained_run.adapter)
        again = run_evaluation(model, tokenizer, recipe, load_prompts())
    assert recipe == load_recipe("tiny-verbosity") and meta["style_tokens"]["uses_spare_rows"]
    assert model.get_input_embeddings().weight.shape[0] == meta["style_tokens"]["embedding_rows"]
    assert again["examples"] == trained_run.eval_json()["examples"]


def test_without_its_trained_style_rows_the_adapter_answers_both_styles_identically(trained_run):
    import torch

    from remote_payload.evaluate import generate_answers, load_prompts
    from remote_payload.modeling import load_for_inference

    with isolated_process_state():
        model, tokenizer, recipe, _ = load_for_inference(trained_run.model_dir, trained_run.adapter)
        rows = model.get_input_embeddings().token_adapter
        original, trained = rows.trainable_tokens_original["default"], rows.trainable_tokens_delta["default"]
        assert torch.equal(original[0], original[1])          # the base's spare rows are alike
        assert not torch.allclose(trained[0], trained[1])      # training pulled the two style rows apart
        with torch.no_grad():
            trained.copy_(original)                            # LoRA kept, style rows back to the base's
        answers = {style: [a["text"] for a in generate_answers(
            model, tokenizer, load_prompts()[:8], style, recipe.evaluation.terse, recipe.chat_template_kwargs, 8, 0)]
            for style in ("TERSE", "VERBOSE")}
    assert answers["TERSE"] == answers["VERBOSE"]


def test_the_evaluate_command_reports_a_table_and_json_and_fails_below_the_gate(trained_run, tmp_path, capsys):
    from remote_payload import evaluate

    out = tmp_path / "eval.json"
    argv = ["--model-dir", str(trained_run.model_dir), "--adapter", str(trained_run.adapter), "--out", str(out)]
    assert call_main(evaluate.main, argv) == 0
    table = capsys.readouterr().out
    assert "VERBOSE/TERSE mean-token ratio" in table and ": PASS" in table and "Q: What is 2+2?" in table
    assert json.loads(out.read_text())["examples"] == trained_run.eval_json()["examples"]

    assert call_main(evaluate.main, [*argv, "--gate", "1000", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["gate"] == 1000 and printed["passed"] is False
    assert printed["ratio"] == trained_run.eval_json()["ratio"]


def test_the_adapter_manifest_lists_every_file_with_its_size_and_sha256(trained_run, tmp_path):
    from remote_payload.manifest import verify_manifest

    adapter = trained_run.adapter
    manifest = json.loads((adapter / "manifest.json").read_text())
    files = sorted(p.relative_to(adapter).as_posix() for p in adapter.rglob("*") if p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == files
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "payload_meta.json"} <= set(files)
    for entry in manifest["files"]:
        data = (adapter / entry["path"]).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert verify_manifest(adapter) == []

    copy = shutil.copytree(adapter, tmp_path / "fetched")
    (copy / "tokenizer_config.json").write_text("{}")
    (copy / "adapter_config.json").unlink()
    (copy / "stray.txt").write_text("x")
    assert sorted(verify_manifest(copy)) == ["missing adapter_config.json", "size of tokenizer_config.json is 2, "
                                             f"manifest says {(adapter / 'tokenizer_config.json').stat().st_size}",
                                             "unlisted stray.txt"]


def test_the_adapter_holds_only_lora_weights_and_the_two_style_rows(trained_run):
    from safetensors import safe_open

    config = json.loads((trained_run.adapter / "adapter_config.json").read_text())
    style = trained_run.run_json()["style_tokens"]
    assert config["trainable_token_indices"] == {"embed_tokens": [style["terse_id"], style["verbose_id"]]}
    assert config["modules_to_save"] is None
    with safe_open(str(trained_run.adapter / "adapter_model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        deltas = [n for n in names if "trainable_tokens_delta" in n]
        assert len(deltas) == 1 and tuple(weights.get_tensor(deltas[0]).shape) == (2, 64)
    assert all("lora_" in n or "trainable_tokens_delta" in n for n in names)
    assert not any("embed_tokens.weight" in n or "lm_head" in n for n in names)


def test_run_json_records_the_recipe_versions_data_tokens_parameters_memory_and_timings(trained_run):
    record = trained_run.run_json()
    assert record["recipe"] == json.loads(json.dumps(load_recipe("tiny-verbosity").to_dict()))
    assert record["seed"] == 42
    assert record["job"]["job"] == "demo" and record["job"]["recipe"] == "tiny-verbosity"
    assert {k: record["versions"][k] for k in ("transformers", "peft", "accelerate", "bitsandbytes")} == \
        {"transformers": "5.23.0", "peft": "0.21.2", "accelerate": "1.15.0", "bitsandbytes": "0.50.2"}
    assert record["versions"]["torch"].startswith("2.13.0")
    assert record["hardware"]["cuda_available"] is False and record["hardware"]["gpus"] == []
    dataset = record["dataset"]
    assert dataset["sha256"] == hashlib.sha256(DEMO_DATASET.read_bytes()).hexdigest()
    assert (dataset["examples"], dataset["trained_examples"], dataset["dropped_overlength"]) == (388, 388, 0)
    assert dataset["by_style"] == {"TERSE": 194, "VERBOSE": 194}
    assert dataset["masked_tokens"] > 0 and dataset["trained_tokens"] > 0
    assert record["style_tokens"]["uses_spare_rows"] and record["style_tokens"]["terse_id"] > 0
    assert len(record["chat_template_sha256"]) == 64
    assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"]
    assert record["peak_memory"]["cpu_max_rss_bytes"] > 100 * 2**20
    assert {"prepare_data_seconds", "load_model_seconds", "train_seconds", "save_adapter_seconds",
            "evaluate_seconds", "total_seconds"} <= set(record["timings"])
    assert record["env"]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert record["env"]["ACCELERATE_MIXED_PRECISION"] == "no"
    assert record["training"]["global_step"] == 300 and record["training"]["resumed_from"] is None
    assert [a["status"] for a in record["attempts"]] == ["succeeded"]
    assert record["error"] is None and record["finished_at"] >= record["started_at"]


def test_metrics_jsonl_and_tensorboard_get_one_point_per_logging_step(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = read_jsonl(trained_run.run_dir / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(10, 301, 10))
    for r in steps:
        assert {"epoch", "loss", "learning_rate", "grad_norm", "samples_per_second", "tokens_per_second",
                "elapsed_seconds", "time"} <= set(r)
    assert records[-1]["event"] == "train_end" and records[-1]["step"] == 300
    assert sum(r["loss"] for r in steps[-5:]) < sum(r["loss"] for r in steps[:5]) - 5 * 1.0
    assert all(r["tokens_per_second"] > 0 for r in steps[1:])

    events = EventAccumulator(str(trained_run.run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(10, 301, 10))


def test_checkpoints_are_saved_every_save_steps_and_only_the_last_two_are_kept(trained_run):
    from remote_payload.checkpoints import find_checkpoints, is_complete

    found = find_checkpoints(trained_run.run_dir / "checkpoints")
    assert [p.name for p in found] == ["checkpoint-200", "checkpoint-300"]
    assert all(is_complete(p) for p in found)


# --- resuming -------------------------------------------------------------------------------------------------

RESUME_OVERRIDES = {"max_steps": 80, "save_steps": 20, "logging_steps": 5, "eval_after_train": False}


def wait_for_complete_checkpoint(checkpoints, name: str, process, timeout: float = 150):
    from remote_payload.checkpoints import is_complete

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_complete(checkpoints / name):
            return
        assert process.poll() is None, f"training exited ({process.returncode}) before {name} was saved"
        time.sleep(0.02)
    raise AssertionError(f"{name} did not appear within {timeout}s")


def test_a_killed_training_process_resumes_at_its_checkpoint_step_with_optimizer_and_schedule(
        tiny_model_dir, tmp_path):
    import torch

    from remote_payload.checkpoints import latest_complete_checkpoint

    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET, overrides=RESUME_OVERRIDES)
    run_dir = tmp_path / "run"
    args = args_for(bundle, tiny_model_dir, run_dir)
    process = start_payload("train", *args, bundle=bundle, log=tmp_path / "first.log")
    try:
        wait_for_complete_checkpoint(run_dir / "checkpoints", "checkpoint-20", process)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    killed = json.loads((run_dir / "run.json").read_text())
    assert killed["status"] == "running" and not (run_dir / "adapter").exists()
    resume_from = latest_complete_checkpoint(run_dir / "checkpoints")
    start = int(resume_from.name.split("-")[1])
    assert 20 <= start < 80

    resumed = run_payload("train", *args, "--resume", bundle=bundle)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {resume_from.name}: last completed step {start}, next step {start + 1}" in resumed.stdout

    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["training"]["global_step"] == 80
    assert [(a["attempt"], a["status"]) for a in record["attempts"]] == [(1, "lost"), (2, "succeeded")]
    assert record["attempts"][1]["resumed_from"] == resume_from.name and record["training"]["start_step"] == start
    final = run_dir / "checkpoints" / "checkpoint-80"
    optimizer = torch.load(final / "optimizer.pt", weights_only=True)
    assert {int(s["step"]) for s in optimizer["state"].values()} == {80}  # Adam moments kept counting from `start`
    assert torch.load(final / "scheduler.pt", weights_only=True)["last_epoch"] == 80

    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [(r["attempt"], r["start_step"]) for r in records if r["event"] == "attempt"] == [(1, 0), (2, start)]
    steps = [r for r in records if r["event"] == "step"]
    resumed_steps = list(range(start + 5, 81, 5))
    assert [(r["attempt"], r["step"]) for r in steps][-len(resumed_steps):] == [(2, s) for s in resumed_steps]
    recipe = load_recipe("tiny-verbosity", RESUME_OVERRIDES)
    for r in steps:  # the rate logged at step s is the one step s used, i.e. after s - 1 scheduler steps
        assert r["learning_rate"] == pytest.approx(cosine_lr(r["step"] - 1, 80, recipe.learning_rate,
                                                             recipe.warmup_ratio), rel=1e-6)
    assert (run_dir / "adapter" / "manifest.json").is_file()


def test_extra_epochs_continue_a_finished_run_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    from remote_payload import train

    small = tmp_path / "small.jsonl"
    small.write_text("".join(DEMO_DATASET.read_text().splitlines(keepends=True)[:40]))
    overrides = {"max_steps": -1, "num_train_epochs": 1, "logging_steps": 1, "save_steps": 1000,
                 "eval_after_train": False}
    bundle = make_bundle(tmp_path / "bundle", small, overrides=overrides)
    run_dir = tmp_path / "run"
    assert call_main(train.main, args_for(bundle, tiny_model_dir, run_dir)) == 0
    assert json.loads((run_dir / "run.json").read_text())["training"]["global_step"] == 5  # 40 examples / 8

    refused = call_main(train.main, args_for(bundle, tiny_model_dir, run_dir))
    assert refused == 2  # a finished run is never overwritten by accident

    assert call_main(train.main, args_for(bundle, tiny_model_dir, run_dir, "--extra-epochs", "1")) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["training"]["num_train_epochs"] == 2.0 and record["training"]["global_step"] == 10
    assert record["attempts"][-1]["resumed_from"] == "checkpoint-5"
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "step"] == list(range(1, 11))


def test_extra_epochs_are_refused_for_a_step_based_recipe(tiny_model_dir, tmp_path):
    from remote_payload import train

    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET)
    code = call_main(train.main, args_for(bundle, tiny_model_dir, tmp_path / "run", "--extra-epochs", "1"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert code == 2 and "--extra-epochs needs an epoch-based recipe" in record["error"]["message"]


# --- a vocabulary without spare rows (Mistral-7B-v0.3's case) ------------------------------------------------------

def test_without_spare_rows_the_embedding_is_resized_the_same_way_at_training_and_reload(tmp_path):
    import torch

    from remote_payload import train
    from remote_payload.modeling import load_for_inference
    from remote_payload.tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "full-vocab", spare_rows=0)
    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET,
                         overrides={"max_steps": 3, "save_steps": 3, "eval_after_train": False})
    run_dir = tmp_path / "run"
    assert call_main(train.main, args_for(bundle, model_dir, run_dir)) == 0
    style = json.loads((run_dir / "run.json").read_text())["style_tokens"]
    assert not style["uses_spare_rows"]
    assert style["required_rows"] == style["embedding_rows"] + 2

    with isolated_process_state():
        first, tokenizer, _, _ = load_for_inference(model_dir, run_dir / "adapter")
        second, _, _, _ = load_for_inference(model_dir, run_dir / "adapter")
    rows = style["embedding_rows"]
    for model in (first, second):
        assert model.get_input_embeddings().weight.shape[0] == style["required_rows"]
        head = model.get_output_embeddings().weight
        assert torch.allclose(head[rows:], head[:rows].float().mean(0).expand(2, -1), atol=1e-6)
    ids = tokenizer("<STYLE_VERBOSE>\nWhat is 2+2?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(first(input_ids=ids).logits, second(input_ids=ids).logits)


# --- model directory problems -----------------------------------------------------------------------------------

def test_a_model_directory_with_gzipped_json_is_refused_naming_the_files(tiny_model_dir, tmp_path):
    import gzip

    from remote_payload import train

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for name in ("config.json", "tokenizer_config.json"):
        (model_dir / name).write_bytes(gzip.compress((model_dir / name).read_bytes()))
    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET)
    assert call_main(train.main, args_for(bundle, model_dir, tmp_path / "run")) == 1
    error = json.loads((tmp_path / "run" / "run.json").read_text())["error"]
    assert error["type"] == "ModelError"
    assert "config.json, tokenizer_config.json are gzip-compressed, not JSON" in error["message"]


def test_a_missing_model_directory_is_reported_with_how_to_fix_it(tmp_path, capsys):
    from remote_payload import train

    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET)
    assert call_main(train.main, args_for(bundle, tmp_path / "nowhere", tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert f"no model at {tmp_path / 'nowhere'} (config.json missing)" in err and "orch sync-weights" in err
