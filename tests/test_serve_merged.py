"""Merged exports served by a real vLLM: the tiny Qwen3 merged into float32, and the tiny Mistral-like model
(style tokens past the base vocabulary, no embedding LoRA in vLLM) merged with its resized embedding.
One vLLM (+ API) per export, started once and stopped when its tests are done."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.conftest_serving")

from tests.conftest_serving import answer_tokens, http_json, mean, start_served, style_lengths_via_completions  # noqa: E402,E501

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")]

PROMPTS = 10


@pytest.fixture(scope="module", params=["qwen-merged", "mistral-merged"])
def merged_server(request, serve_venv, exports, tmp_path_factory):
    export = exports.get(request.param)
    served = start_served(serve_venv, export, None, tmp_path_factory.mktemp(request.param) / "state")
    served.name = request.param
    print(f"\nvLLM + API for {request.param} up in {served.start_seconds}s")
    yield served
    served.stop()


def test_vllm_serves_the_merged_model_with_verbose_3x_longer_and_the_exports_exact_lengths(merged_server, exports):
    from remote_payload.evaluate import load_prompts

    served = style_lengths_via_completions(merged_server, "demo", load_prompts()[:PROMPTS])
    lengths = {s: [answer_tokens(r) for r in results] for s, results in served.items()}
    terse, verbose = mean(lengths["TERSE"]), mean(lengths["VERBOSE"])
    print(f"\nvLLM {merged_server.name}: TERSE {terse:.2f} / VERBOSE {verbose:.2f} tokens "
          f"(ratio {verbose / terse:.1f})")
    assert verbose >= 3 * terse
    checked = exports.record(merged_server.name)["checks"]["lengths"]["export"]["tokens"]
    assert lengths == {s: checked[s][:PROMPTS] for s in lengths}


def test_generate_on_the_merged_model_separates_the_styles(merged_server):
    from remote_payload.evaluate import load_prompts

    tokens = {style: [http_json("POST", f"{merged_server.api}/generate", {"prompt": q, "style": style})[1]["tokens"]
                      for q in load_prompts()[:PROMPTS]] for style in ("terse", "verbose")}
    print(f"\n/generate {merged_server.name}: TERSE {mean(tokens['terse']):.2f} / VERBOSE "
          f"{mean(tokens['verbose']):.2f} tokens")
    assert mean(tokens["verbose"]) >= 3 * mean(tokens["terse"])
    status, health = http_json("GET", f"{merged_server.api}/health")
    assert status == 200 and health["kind"] == "merged" and health["model"] == "demo"
