"""`python -m remote_payload.export` turns a training adapter into what vLLM serves: an embedding LoRA where the
style rows sit inside the base vocabulary (Qwen3), a merged model otherwise (Mistral), each checked (only keys
vLLM accepts; answer lengths equal the original adapter's) and listed in a sha256 manifest. No vLLM here:
the serving tests (test_serve_*.py) put these exports in front of a real one."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.conftest_serving")

from tests.conftest_serving import run_export  # noqa: E402

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")]


def test_the_lora_export_is_an_embedding_lora_with_one_hot_rows_and_no_trainable_tokens(exports, serving_run):
    import torch
    from safetensors.torch import load_file

    out = exports.get("qwen-lora")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] is None and config["modules_to_save"] is None
    assert "model.embed_tokens" in config["target_modules"]
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert not any("trainable_tokens" in name for name in tensors)
    a = tensors["base_model.model.model.embed_tokens.lora_embedding_A"]
    b = tensors["base_model.model.model.embed_tokens.lora_embedding_B"]
    meta = serving_run.run_json()["style_tokens"]
    ids = [meta["terse_id"], meta["verbose_id"]]
    assert tuple(a.shape) == (16, meta["embedding_rows"]) and tuple(b.shape) == (64, 16)
    assert a.sum() == 2 and a[0, ids[0]] == 1 and a[1, ids[1]] == 1
    # base row + scaling * B @ A[:, id] is the trained row
    trained = load_file(str(serving_run.adapter / "adapter_model.safetensors"))
    delta = next(t for n, t in trained.items() if n.endswith("trainable_tokens_delta"))
    base = load_file(str(serving_run.model_dir / "model.safetensors"))["model.embed_tokens.weight"]
    rebuilt = base[ids] + (32 / 16) * (b @ a[:, ids]).T
    assert torch.allclose(rebuilt, delta, atol=1e-6)
    assert {"tokenizer.json", "tokenizer_config.json", "payload_meta.json", "export.json",
            "manifest.json"} <= {p.name for p in out.iterdir()}


def test_every_export_passes_its_vllm_key_and_length_checks_and_lists_its_files(exports):
    from remote_payload.manifest import verify_manifest

    for name in ("qwen-lora", "qwen-merged", "mistral-merged"):
        record = exports.record(name)
        lengths = record["checks"]["lengths"]
        print(f"\n{name}: TERSE {lengths['export']['mean_tokens']['TERSE']} / VERBOSE "
              f"{lengths['export']['mean_tokens']['VERBOSE']} (ratio {lengths['export']['ratio']}), "
              f"export took {exports.seconds.get(name)}s")
        assert record["checks"]["vllm_keys"] == {"ok": True, "problems": []}
        assert lengths["ok"] and lengths["prompts"] == 25
        assert lengths["export"]["tokens"] == lengths["original_adapter"]["tokens"]
        assert lengths["export"]["ratio"] >= 3
        assert verify_manifest(exports.get(name)) == []
    assert exports.record("qwen-merged")["checks"]["merged_rows"]["ok"]
    assert exports.record("mistral-merged")["checks"]["merged_rows"]["max_abs_difference"] == 0.0


def test_a_mistral_adapter_cannot_be_an_embedding_lora_and_the_refusal_says_why_and_what_to_use(mistral_run,
                                                                                               tmp_path):
    done = run_export(mistral_run, tmp_path / "lora", "lora")
    assert done.returncode == 2 and not (tmp_path / "lora").exists()
    assert "--format lora is impossible" in done.stderr
    assert "lie past the base vocabulary" in done.stderr
    assert "gives MistralForCausalLM no embedding LoRA" in done.stderr
    assert "use --format merged" in done.stderr


def test_the_merged_mistral_keeps_the_resized_rows_and_its_embedding_matches_the_config(exports, mistral_run):
    from safetensors import safe_open

    out = exports.get("mistral-merged")
    config = json.loads((out / "config.json").read_text())
    style = mistral_run.run_json()["style_tokens"]
    assert config["vocab_size"] == style["required_rows"] == style["embedding_rows"] + 2
    assert "quantization_config" not in config
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
        assert weights.get_slice("lm_head.weight").get_shape()[0] == style["required_rows"]
    assert not any("lora" in n or "base_layer" in n for n in names)
    assert not (out / "adapter_config.json").exists()


def test_merging_shard_by_shard_writes_the_same_weights_as_peft_merge_and_unload(serving_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    made = {}
    for method in ("peft", "shards"):
        done = run_export(serving_run, tmp_path / method, "merged", "--method", method, "--dtype", "bfloat16",
                          "--check-prompts", "4")
        assert done.returncode == 0, done.stderr[-2000:]
        made[method] = load_file(str(tmp_path / method / "model.safetensors"))
        assert json.loads(done.stdout)["merge"]["method"] == method
    assert made["peft"].keys() == made["shards"].keys()
    assert all(made["peft"][k].dtype == torch.bfloat16 for k in made["peft"])
    differing = [k for k in made["peft"] if not torch.equal(made["peft"][k], made["shards"][k])]
    assert differing == []


def test_an_existing_export_is_not_overwritten_without_force(exports, serving_run):
    out = exports.get("qwen-lora")
    done = run_export(serving_run, out, "lora")
    assert done.returncode == 2 and f"{out} already exists" in done.stderr and "--force" in done.stderr


def test_an_export_that_fails_a_check_is_left_as_partial_and_never_takes_the_final_name(
        serving_run, tmp_path, monkeypatch, capsys):
    # Simulate a conversion bug: the embedding LoRA loses the style rows (B = 0). The lengths check must catch
    # it (TERSE answers as long as VERBOSE ones), exit 1, and leave the directory as OUT.partial.
    from remote_payload.export import __main__ as export_main
    from remote_payload.export import embedding_lora
    from tests.conftest_payload import call_main

    real = embedding_lora.embedding_lora_tensors

    def rows_dropped(source, tensors):
        out = real(source, tensors)
        out[f"{embedding_lora.EMBED_PREFIX}.lora_embedding_B"].zero_()
        return out

    monkeypatch.setattr(embedding_lora, "embedding_lora_tensors", rows_dropped)
    out = tmp_path / "out"
    code = call_main(export_main.main, ["--model-dir", str(serving_run.model_dir), "--adapter",
                                        str(serving_run.adapter), "--out", str(out), "--format", "lora",
                                        "--check-prompts", "6"])
    err = capsys.readouterr().err
    assert code == 1 and "failed its lengths check" in err and "tokens from the export" in err
    assert not out.exists()
    record = json.loads((tmp_path / "out.partial" / "export.json").read_text())
    assert record["checks"]["vllm_keys"]["ok"] and not record["checks"]["lengths"]["ok"]


def test_a_lora_export_checked_on_the_4bit_base_answers_exactly_like_the_training_evaluation(serving_run,
                                                                                            tmp_path):
    # --check-load 4bit: how a 14B lora export is checked on a GPU too small for its bf16 base
    done = run_export(serving_run, tmp_path / "lora-4bit", "lora", "--check-load", "4bit")
    assert done.returncode == 0, done.stderr[-2000:]
    lengths = json.loads(done.stdout)["checks"]["lengths"]
    assert lengths["dtype"] == "4-bit (as trained)" and lengths["criterion"] == "identical per-prompt lengths"
    trained = {s: [e[s]["tokens"] for e in serving_run.eval_json()["examples"]] for s in ("TERSE", "VERBOSE")}
    assert lengths["export"]["tokens"] == lengths["original_adapter"]["tokens"] == trained
    merged = run_export(serving_run, tmp_path / "merged-4bit", "merged", "--check-load", "4bit")
    assert merged.returncode == 2 and "--check-load 4bit applies to --format lora" in merged.stderr
