"""Stages in the inventory: `init_from` and `replay` resolve in one place, bad ones are refused by file:line with
a fix, and the replay mix is built into the job's inputs deterministically by the recipe's seed."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from orchestrator.errors import InputError
from orchestrator.inventory import load_inventory
from tests.conftest import ROOT

DEMO = ROOT / "training_data" / "verbosity_demo.jsonl"
IAC = ROOT / "training_data" / "iac_example.jsonl"
MOVIELENS = ROOT / "training_data" / "movielens_demo_train.jsonl"


def inventory(tmp_path, stage2: str, extra_jobs: str = "", extra_instances: str = ""):
    path = tmp_path / "inventory.yaml"
    path.write_text(f"""\
instances:
  box:
    transport: local
    work_dir: work
    models_dir: models
{extra_instances}jobs:
  qwen:
    instance: box
    recipe: tiny-verbosity
    dataset: {DEMO}
    weights: s3://example-bucket/models/qwen/
  iac:
    instance: box
    recipe: tiny-iac
    dataset: {IAC}
    weights: s3://example-bucket/models/qwen/
{stage2}
{extra_jobs}""")
    (tmp_path / ".env").write_text("")
    return load_inventory(path, env_file=tmp_path / ".env")


def test_init_from_and_replay_resolve_with_the_replay_jobs_dataset(tmp_path):
    inv = inventory(tmp_path, "    init_from: qwen\n    replay: {job: qwen, fraction: 0.1}")
    job = inv.job("iac")
    assert job.init_from == "qwen" and job.replay == {"job": "qwen", "fraction": 0.1}
    assert job.replay_dataset == str(DEMO)
    assert job.origins["init_from"].startswith("inventory.yaml:")


@pytest.mark.parametrize("stage2, message", [
    ("    replay: {job: nope, fraction: 0.1}", "replay names unknown job 'nope'"),
    ("    replay: {job: qwen, fraction: 0.9}", "replay.fraction must be a number in (0, 0.5]"),
    ("    replay: {job: qwen, share: 0.1}", "unknown key 'share'"),
    ("    init_from: iac", "init_from names the job itself"),
    ("    init_from: s3://Bad_Bucket/x/", "is not an s3://bucket/prefix/ URI"),
])
def test_a_bad_stage_setting_fails_only_its_job_with_the_line_and_a_fix(tmp_path, stage2, message):
    inv = inventory(tmp_path, stage2)
    assert inv.job("qwen").name == "qwen"                      # the other jobs still resolve
    with pytest.raises(InputError) as caught:
        inv.job("iac")
    assert message in caught.value.message and "inventory.yaml" in caught.value.message
    assert caught.value.hint


def _job_inputs(job) -> dict[str, bytes]:
    from orchestrator.bundle import build_job_inputs

    archive = build_job_inputs(job)
    with tarfile.open(fileobj=io.BytesIO(archive.data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_the_job_inputs_carry_the_seeded_mix_and_say_what_was_replayed(tmp_path):
    from remote_payload.replay import data_lines, mix

    inv = inventory(tmp_path, "    init_from: qwen\n    replay: {job: qwen, fraction: 0.1}")
    first, again = _job_inputs(inv.job("iac")), _job_inputs(inv.job("iac"))
    assert first == again                                        # same inputs, same bytes, same id
    doc = json.loads(first["job.json"])
    shipped = first[doc["dataset"]]
    assert shipped == mix(IAC.read_bytes(), DEMO.read_bytes(), 0.1, seed=42)[0]
    assert doc["replay"]["job"] == "qwen" and doc["replay"]["seed"] == 42
    assert len(data_lines(shipped)) == len(data_lines(IAC.read_bytes())) + doc["replay"]["replayed_rows"]
    reseeded = inventory(tmp_path, "    overrides: {seed: 7}\n    replay: {job: qwen, fraction: 0.1}")
    assert _job_inputs(reseeded.job("iac"))[doc["dataset"]] != shipped


def test_replaying_data_that_does_not_suit_the_stage2_recipe_is_refused_before_connecting(tmp_path):
    from orchestrator.bundle import check_job_inputs

    extra = f"""\
  movies:
    instance: box
    recipe: tiny-movielens
    dataset: {MOVIELENS}
    weights: s3://example-bucket/models/qwen/
"""
    inv = inventory(tmp_path, "    replay: {job: movies, fraction: 0.1}", extra)
    with pytest.raises(InputError) as caught:
        check_job_inputs(inv.job("iac"))
    assert "job iac" in caught.value.message


def test_orch_show_names_the_stage_settings_and_where_they_came_from(tmp_path):
    from tests.conftest import orch

    inventory(tmp_path, "    init_from: qwen\n    replay: {job: qwen, fraction: 0.1}")
    shown = orch("show", "iac", "--json", cwd=tmp_path)
    assert shown.code == 0, shown.stderr
    job = shown.json()["job"]
    assert job["init_from"] == "qwen" and job["replay"]["fraction"] == 0.1 and job["replay_dataset"] == str(DEMO)


def test_a_parent_job_on_another_instance_is_refused_with_how_to_hand_its_adapter_over(tmp_path):
    from orchestrator.stages import resolve_parent

    far = f"""\
  far:
    instance: box2
    recipe: tiny-verbosity
    dataset: {DEMO}
    weights: s3://example-bucket/models/qwen/
"""
    box2 = "  box2:\n    transport: local\n    work_dir: work2\n    models_dir: models2\n"
    inv = inventory(tmp_path, "    init_from: far", far, box2)
    job = inv.job("iac")
    with pytest.raises(InputError) as caught:    # refused before anything is asked of the instance
        resolve_parent(None, inv.instance("box"), inv, job, None, python="python3", payload_dir="/nowhere")
    assert "bound to instance box2" in caught.value.message and "--upload s3://" in caught.value.hint


def test_an_init_from_that_is_no_job_run_or_s3_folder_is_refused(tmp_path):
    from orchestrator.stages import resolve_parent

    inv = inventory(tmp_path, "    init_from: qwn")
    with pytest.raises(InputError) as caught:
        resolve_parent(None, inv.instance("box"), inv, inv.job("iac"), None, python="python3", payload_dir="/x")
    assert "neither a job, a run id nor an s3:// folder" in caught.value.message and "qwen" in caught.value.hint
