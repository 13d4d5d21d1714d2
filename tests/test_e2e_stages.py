"""Stages end to end through the CLI, over the loopback sshd and a real S3 server: stage 1 (tiny-verbosity on the
demo set), stage 2 (tiny-iac on the IaC example corpus) `init_from` it with 10% replay, the parent recorded, one
adapter carrying both fetched back, then `orch eval --suite iac` validating the tiny model's own answers with
the real validators here and the verbosity gate checked again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from remote_payload.replay import data_lines, mix, replay_count
from tests.conftest import ROOT, OrchRun, kill_run, orch
from tests.fixtures.sshd import write_inventory

pytestmark = pytest.mark.timeout(1500)

DEMO = ROOT / "training_data" / "verbosity_demo.jsonl"
IAC = ROOT / "training_data" / "iac_example.jsonl"
PROMPTS = ROOT / "training_data" / "iac_eval_prompts.jsonl"


@pytest.fixture(scope="module")
def weights_uri(moto_server, tiny_model_dir):
    client = moto_server.client()
    bucket, prefix = "orch-stages", "models/tiny-qwen3/"
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in Path(tiny_model_dir).rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=prefix + path.relative_to(tiny_model_dir).as_posix(),
                          Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


class Stages:
    def __init__(self, root: Path, sshd, env: dict, instance: dict, base: dict):
        self.root, self.sshd, self.env, self.instance, self.base = root, sshd, env, instance, base
        self.timings: dict[str, float] = {}

    def jobs(self, **extra) -> None:
        jobs = {"stage1": self.base,
                "iac": {**self.base, "recipe": "tiny-iac", "dataset": str(IAC), "init_from": "stage1",
                        "replay": {"job": "stage1", "fraction": 0.1}}, **extra}
        write_inventory(self.root, {"stagebox": self.instance}, jobs, env={})

    def orch(self, *args: str, timeout: float = 900, env: dict | None = None) -> OrchRun:
        t0 = time.monotonic()
        result = orch(*args, cwd=self.root, env={**self.env, **(env or {})}, timeout=timeout)
        self.timings[" ".join(args[:2])] = round(time.monotonic() - t0, 1)
        return result

    def run_dir(self, run_id: str) -> Path:
        return Path(self.sshd.remote_dirs("stagebox")[0]) / "runs" / run_id


@pytest.fixture(scope="module")
def stages(tmp_path_factory, sshd, instance_venv, moto_server, weights_uri):
    sshd.set_gpu_case("a10g-idle")
    root = tmp_path_factory.mktemp("stages")
    instance = sshd.instance("stagebox", python_env=str(instance_venv))
    base = {"instance": "stagebox", "recipe": "tiny-verbosity", "dataset": str(DEMO), "weights": weights_uri,
            "s3_endpoint": moto_server.endpoint, "s3_region": "us-east-1", "s3_credentials": "forward"}
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}
    s = Stages(root, sshd, env, instance, base)
    s.jobs()
    return s


@pytest.fixture(scope="module")
def trained(stages):
    first = stages.orch("train", "stage1", "--follow", "--json")
    assert first.code == 0, first.stderr[-3000:]
    second = stages.orch("train", "iac", "--follow", "--json")
    assert second.code == 0, second.stderr[-3000:]
    print(f"timings: {stages.timings}")
    return first.json(), second.json()


def test_stage2_continues_from_the_latest_succeeded_run_of_its_init_from_job(stages, trained):
    from remote_payload.modeling import file_sha256

    stage1, stage2 = trained
    assert stage2["parent"]["run_id"] == stage1["run_id"] and stage2["parent"]["job"] == "stage1"
    run = json.loads((stages.run_dir(stage2["run_id"]) / "run.json").read_text())
    parent_adapter = stages.run_dir(stage1["run_id"]) / "adapter"
    assert run["parent"]["run_id"] == stage1["run_id"]
    assert run["parent"]["adapter_sha256"] == file_sha256(parent_adapter / "adapter_model.safetensors")
    assert run["status"] == "succeeded" and run["eval"]["passed"] and run["eval"]["ratio"] >= 3.0
    status = stages.orch("status", "--run", stage2["run_id"], "--json")
    assert status.code == 0 and status.json()["runs"][0]["parent"]["run_id"] == stage1["run_id"]
    print(f"verbosity ratio: stage 1 {stage1_ratio(stages, stage1)}, after stage 2 {run['eval']['ratio']}")


def stage1_ratio(stages, stage1) -> float:
    return json.loads((stages.run_dir(stage1["run_id"]) / "run.json").read_text())["eval"]["ratio"]


def test_the_replay_mix_on_the_instance_is_the_seeded_one(stages, trained):
    _, stage2 = trained
    run = json.loads((stages.run_dir(stage2["run_id"]) / "run.json").read_text())
    replay = run["job"]["replay"]
    expected, record = mix(IAC.read_bytes(), DEMO.read_bytes(), 0.1, seed=42)     # tiny-iac's seed
    shipped = Path(run["dataset"]["path"]).read_bytes()
    assert shipped == expected and replay["mixed_sha256"] == record["mixed_sha256"]
    assert replay["replayed_rows"] == replay_count(len(data_lines(IAC.read_bytes())),
                                                   len(data_lines(DEMO.read_bytes())), 0.1) > 0
    assert run["dataset"]["by_style"]["TERSE"] > 0 and run["dataset"]["by_style"]["VERBOSE"] > 0


def test_fetch_adapter_brings_back_one_adapter_that_carries_both_stages(stages, trained, tmp_path):
    from safetensors.torch import load_file

    stage1, stage2 = trained
    fetched = stages.orch("fetch-adapter", "iac", "--dest", str(tmp_path), "--json")
    assert fetched.code == 0, fetched.stderr
    adapter = tmp_path / "iac" / stage2["run_id"] / "adapter"
    meta = json.loads((adapter / "payload_meta.json").read_text())
    assert [e["run_id"] for e in meta["lineage"]] == [stage1["run_id"]]
    assert meta["style_tokens"] is not None and meta["recipe"]["name"] == "tiny-iac"
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in tensors) and any("token" in k for k in tensors)   # LoRA + style rows


def test_eval_suite_iac_validates_the_tiny_models_answers_and_rechecks_the_verbosity_gate(stages, trained,
                                                                                          validators_venv):
    _, stage2 = trained
    result = stages.orch("eval", "iac", "--suite", "iac", "--max-new-tokens", "48", "--json",
                         env={"ORCH_VALIDATORS_DIR": str(validators_venv.parent)})
    doc = result.json()
    report = doc["report"]
    prompts = [json.loads(line) for line in PROMPTS.read_text().splitlines()]
    assert doc["run_id"] == stage2["run_id"] and report["answers"] == len(prompts)
    assert set(report["kinds"]) == {"terraform", "cloudformation", "kubernetes", "helm", "pulumi"}
    assert {g["gate"] for g in report["gates"]} >= {"terraform validate pass rate"}
    assert report["versions"] and "checkov" in report["versions"]
    assert doc["summary"]["by_source"].keys() == {"train", "unseen"}
    # 48 new tokens of a 64-wide random model trained 20 steps: no valid IaC, so the gates fail, honestly
    assert result.code == 1 and doc["ok"] is False and report["ok"] is False
    assert doc["verbosity"]["passed"] and doc["verbosity"]["ratio"] >= 3.0
    answers = Path(doc["summary"]["answers_file"])
    assert answers.is_file() and len(answers.read_text().splitlines()) == len(prompts)
    print(f"iac eval: {report['reason']}; by source {doc['summary']['by_source']}; timings {stages.timings}")
    shown = stages.orch("eval", "iac", "--suite", "iac", "--max-new-tokens", "48",
                        env={"ORCH_VALIDATORS_DIR": str(validators_venv.parent)})
    assert shown.code == 1
    for text in ("terraform: ", "gate terraform validate pass rate: FAIL", "versions: ", "not checked",
                 "prompts train: 14 answer(s)", "prompts unseen: 9 answer(s)", "VERBOSE/TERSE mean token ratio"):
        assert text in shown.stderr, (text, shown.stderr[-3000:])


def test_init_from_an_s3_adapter_fetches_it_onto_the_instance_and_records_it(stages, trained, moto_server,
                                                                             tmp_path):
    stage1, _ = trained
    archived = stages.orch("fetch-adapter", "stage1", "--run", stage1["run_id"], "--dest", str(tmp_path),
                           "--upload", "s3://orch-stages/archive/", "--json")
    assert archived.code == 0, archived.stderr
    uri = f"s3://orch-stages/archive/stage1/{stage1['run_id']}/adapter/"
    stages.jobs(**{"iac-s3": {**stages.base, "recipe": "tiny-iac", "dataset": str(IAC), "init_from": uri,
                              "overrides": {"max_steps": 2, "eval_after_train": False}}})
    trained_s3 = stages.orch("train", "iac-s3", "--follow", "--json")
    assert trained_s3.code == 0, trained_s3.stderr[-3000:]
    run = json.loads((stages.run_dir(trained_s3.json()["run_id"]) / "run.json").read_text())
    assert run["parent"]["source"] == uri and run["parent"]["adapter_dir"].startswith(
        str(Path(stages.sshd.remote_dirs("stagebox")[0]) / "parents"))
    stage1_run = json.loads((stages.run_dir(stage1["run_id"]) / "run.json").read_text())
    assert run["parent"]["recipe"] == stage1_run["recipe"]["name"]


def test_a_bad_prompts_file_is_refused_before_connecting(stages, tmp_path):
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"kind": "terraform", "instruction": "ok"}\n{"kind": "ansible", "instruction": "x"}\n')
    result = stages.orch("eval", "iac", "--suite", "iac", "--prompts", str(bad))
    assert result.code == 2 and "prompts.jsonl:2" in result.stderr


def test_remote_validate_runs_the_validators_on_the_instance_and_gives_the_same_verdicts(stages, trained,
                                                                                       validators_venv):
    """The instance's validators venv is this machine's cached one, linked where `--remote-validate` installs
    (work_dir/validators/<requirements hash>): the installer finds it complete and reuses it, as a second
    eval on a real instance does."""
    work = Path(stages.sshd.remote_dirs("stagebox")[0])
    (work / "validators").mkdir(exist_ok=True)
    link = work / "validators" / validators_venv.name
    if not link.exists():
        link.symlink_to(validators_venv, target_is_directory=True)
    os.chown(work / "validators", *owner_of(work))
    here = stages.orch("eval", "iac", "--suite", "iac", "--max-new-tokens", "48", "--json",
                       env={"ORCH_VALIDATORS_DIR": str(validators_venv.parent)})
    there = stages.orch("eval", "iac", "--suite", "iac", "--max-new-tokens", "48", "--remote-validate", "--json")
    assert there.code == 1, there.stderr[-2000:]
    local, remote = here.json(), there.json()
    assert remote["validated_on"] == "stagebox" and local["validated_on"] == "controller"
    assert verdicts(remote) == verdicts(local)                 # greedy answers, the same validators: same verdicts
    stage2 = trained[1]
    assert (stages.run_dir(stage2["run_id"]) / "iac" / "report.json").is_file()


def verdicts(doc: dict) -> dict:
    return {r["id"]: {n: v["status"] for n, v in r["verdicts"].items()} for r in doc["report"]["results"]}


def owner_of(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def test_a_killed_stage2_run_resumes_from_its_checkpoint_keeping_its_parent_though_stage1_trained_again(
        stages, trained):
    """--resume continues the stage-2 run it was given, on the parent that run started from: a newer stage-1 run
    (the one init_from would pick for a new run now) must not slip into a half-trained run's lineage."""
    from remote_payload.modeling import file_sha256

    stage1, _ = trained
    ckpt = {**stages.base, "recipe": "tiny-iac", "dataset": str(IAC), "init_from": "stage1",
            "overrides": {"max_steps": 30, "save_steps": 5, "eval_after_train": False}}
    stages.jobs(**{"iac-ckpt": ckpt})
    started = stages.orch("train", "iac-ckpt", "--json")
    assert started.code == 0, started.stderr[-3000:]
    run_id = started.json()["run_id"]
    run_dir = stages.run_dir(run_id)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "checkpoint-10").is_dir():
        assert time.monotonic() < deadline and not (run_dir / "exit_code").exists(), \
            (run_dir / "log").read_text()[-3000:]
        time.sleep(0.5)
    kill_run(run_dir)
    deadline = time.monotonic() + 60
    while (lost := stages.orch("status", "--run", run_id, "--json").json()["runs"][0])["state"] == "running":
        assert time.monotonic() < deadline, lost
        time.sleep(0.5)
    assert lost["state"] == "lost", lost

    # stage 1 trains again meanwhile: a new stage-2 run would now start from this one
    stages.jobs(**{"iac-ckpt": ckpt, "stage1": {**stages.base, "overrides": {"max_steps": 2,
                                                                            "eval_after_train": False}}})
    newer = stages.orch("train", "stage1", "--follow", "--json")
    assert newer.code == 0, newer.stderr[-3000:]
    assert newer.json()["run_id"] != stage1["run_id"]

    resumed = stages.orch("train", "iac-ckpt", "--resume", "--follow", "--json")
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.json()["run_id"] == run_id and resumed.json()["state"] == "finished"
    record = json.loads((run_dir / "run.json").read_text())
    assert [(a["attempt"], a["status"]) for a in record["attempts"]] == [(1, "lost"), (2, "succeeded")]
    assert int(record["attempts"][-1]["resumed_from"].split("-")[1]) >= 10
    parent_adapter = stages.run_dir(stage1["run_id"]) / "adapter"
    assert record["parent"]["run_id"] == stage1["run_id"]
    assert record["parent"]["adapter_sha256"] == file_sha256(parent_adapter / "adapter_model.safetensors")
    meta = json.loads((run_dir / "adapter" / "payload_meta.json").read_text())
    assert [e["run_id"] for e in meta["lineage"]] == [stage1["run_id"]]
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if m["event"] == "step"][-1] == 30
