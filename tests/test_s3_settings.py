"""The controller's S3 client takes its settings from the resolved variables -- `.env` first, then the
environment, as every other value -- and `orch show` says where each came from (secrets masked)."""

from __future__ import annotations

import json

from tests.fixtures.s3server import rclone_server  # noqa: F401  (session fixture)

INVENTORY = """\
instances:
  local:
    transport: local
    work_dir: work
    models_dir: models
    imds_url: ""
    expect: {gpu: null, min_free_disk_gb: 0.001, min_free_tmp_gb: 0.001}
jobs:
  demo:
    instance: local
    recipe: tiny-verbosity
    dataset: data.jsonl
    weights: s3://orch-dotenv/models/tiny/
    s3_credentials: forward
"""
DATA = '{"prompt": "What is 2+2?", "completion": "4", "style": "TERSE"}\n'


def write_project(project, server, *, env_lines: str) -> None:
    server.put_file("orch-dotenv", "models/tiny/config.json", b'{"model_type": "qwen3"}')
    project.write("inventory.yaml", INVENTORY)
    project.write("data.jsonl", DATA)
    project.write(".env", env_lines)


def test_aws_keys_and_endpoint_in_the_env_file_are_what_the_controller_lists_the_weights_with(
        project, rclone_server):  # noqa: F811
    write_project(project, rclone_server, env_lines=(
        f"AWS_ACCESS_KEY_ID={rclone_server.access_key}\nAWS_SECRET_ACCESS_KEY={rclone_server.secret_key}\n"
        f"AWS_ENDPOINT_URL={rclone_server.endpoint}\nAWS_REGION=us-east-1\n"))
    # the process environment carries other (wrong) keys and a closed endpoint: .env must win
    run = project.orch("preflight", "demo", "--json",
                       env={"AWS_ACCESS_KEY_ID": "wrong", "AWS_SECRET_ACCESS_KEY": "wrong-secret-value",
                            "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    doc = json.loads(run.stdout)
    weights = {c["name"]: c for c in doc["instances"][0]["checks"]}["weights"]
    assert weights["ok"], weights
    assert "1 files" in weights["detail"]


def test_show_names_where_each_s3_setting_came_from_and_masks_the_secret(project, rclone_server):  # noqa: F811
    write_project(project, rclone_server, env_lines=(
        f"AWS_ACCESS_KEY_ID={rclone_server.access_key}\nAWS_SECRET_ACCESS_KEY={rclone_server.secret_key}\n"
        f"AWS_ENDPOINT_URL={rclone_server.endpoint}\nAWS_PROFILE=orch-test\n"))
    run = project.orch("show", "demo", "--json")
    assert run.code == 0, run.stderr
    s3 = run.json()["s3"]
    assert s3["endpoint"] == rclone_server.endpoint and s3["origins"]["endpoint"].startswith("AWS_ENDPOINT_URL in ")
    assert s3["profile"] == "orch-test" and s3["origins"]["profile"].startswith("AWS_PROFILE in ")
    assert s3["origins"]["secret_access_key"].startswith("AWS_SECRET_ACCESS_KEY in ")
    assert rclone_server.secret_key not in run.stdout + run.stderr
    human = project.orch("show", "demo")
    assert "AWS_ENDPOINT_URL in" in human.stderr and rclone_server.secret_key not in human.stderr


def test_a_credential_under_a_name_that_does_not_look_secret_is_still_masked(project, rclone_server):  # noqa: F811
    write_project(project, rclone_server, env_lines=(
        f"MINIO_USER={rclone_server.access_key}\nMINIO_KEY={rclone_server.secret_key}\n"
        f"AWS_ENDPOINT_URL={rclone_server.endpoint}\n"))
    project.write("inventory.yaml", INVENTORY + "s3:\n  access_key_id: ${MINIO_USER}\n"
                                                "  secret_access_key: ${MINIO_KEY}\n")
    listed = project.orch("preflight", "demo", "--json")
    weights = {c["name"]: c for c in json.loads(listed.stdout)["instances"][0]["checks"]}["weights"]
    assert weights["ok"], weights
    shown = project.orch("show", "demo", "--json")
    assert rclone_server.secret_key not in shown.stdout + shown.stderr
    assert shown.json()["s3"]["origins"]["secret_access_key"].startswith("MINIO_KEY in ")
