"""Bad input never shows a traceback: one message that says what is wrong and how to fix it, exit 2."""

from __future__ import annotations

import json

INVENTORY = """\
defaults:
  key: ${SSH_KEY_PATH}
instances:
  qwen-g5:
    host: ${QWEN_GPU_INSTANCE_IP}
    user: ubuntu
    work_dir: /home/ubuntu/orch
    models_dir: /home/ubuntu/models
    expect:
      gpu: A10G
      min_vram_gb: 22
  local:
    transport: local
    work_dir: work
    models_dir: models
jobs:
  qwen:
    instance: qwen-g5
    recipe: qwen3-14b-verbosity
    dataset: data.jsonl
    weights: s3://example-bucket/models/qwen/
  qwen-b:
    instance: qwen-g5
    recipe: qwen3-14b-verbosity
    dataset: data.jsonl
    weights: s3://example-bucket/models/qwen/
  demo:
    instance: local
    recipe: tiny-verbosity
    dataset: data.jsonl
    weights: s3://orch-demo/tiny/
"""
ENV = "SSH_KEY_PATH=/keys/id_ed25519\nQWEN_GPU_INSTANCE_IP=203.0.113.10\n"


def assert_clean_failure(run, code: int = 2):
    assert run.code == code, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("error: ")


def test_values_resolve_from_env_file_and_say_where_they_came_from(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("show", "qwen", "--json")
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["instance"]["host"] == "203.0.113.10"
    assert doc["origins"]["host"].startswith("QWEN_GPU_INSTANCE_IP in ")
    assert doc["job"]["name"] == "qwen"


def test_env_file_wins_over_a_stale_environment_variable(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("show", "qwen", "--json", env={"QWEN_GPU_INSTANCE_IP": "203.0.113.99"})
    assert run.json()["instance"]["host"] == "203.0.113.10"


def test_environment_fills_in_what_env_file_lacks_and_defaults_apply(project):
    project.write("inventory.yaml", INVENTORY.replace("user: ubuntu", "user: ${QWEN_USER:-ubuntu}"))
    run = project.orch("show", "qwen", "--json",
                       env={"SSH_KEY_PATH": "/k", "QWEN_GPU_INSTANCE_IP": "203.0.113.7"})
    doc = run.json()
    assert doc["instance"]["host"] == "203.0.113.7"
    assert doc["instance"]["user"] == "ubuntu"
    assert "environment" in doc["origins"]["host"]


def test_unknown_instance_is_refused_with_the_known_names(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("show", "--instance", "qwen-g6")
    assert_clean_failure(run)
    assert "unknown instance 'qwen-g6'" in run.stderr
    assert "local, qwen-g5" in run.stderr


def test_unknown_job_is_refused_with_the_known_names(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("show", "qwne")
    assert_clean_failure(run)
    assert "unknown job 'qwne'" in run.stderr and "demo, qwen, qwen-b" in run.stderr


def test_missing_env_variable_names_the_variable_and_the_file(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", "SSH_KEY_PATH=/keys/id\n")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "QWEN_GPU_INSTANCE_IP" in run.stderr
    assert ".env" in run.stderr
    assert "inventory.yaml:5" in run.stderr  # the line that uses it


def test_missing_variables_of_one_instance_do_not_block_another(project):
    project.write("inventory.yaml", INVENTORY)
    run = project.orch("show", "demo", "--json")  # no .env at all: qwen-g5 cannot resolve, local can
    assert run.code == 0, run.stderr
    assert run.json()["instance"]["transport"] == "local"


def test_malformed_yaml_gives_the_line_number(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: [ubuntu"))
    project.write(".env", ENV)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "malformed YAML" in run.stderr
    assert "inventory.yaml:7" in run.stderr or "inventory.yaml:6" in run.stderr


def test_wrong_field_type_names_the_field_and_line(project):
    project.write("inventory.yaml", INVENTORY.replace("      min_vram_gb: 22", "      min_vram_gb: lots"))
    project.write(".env", ENV)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "instances.qwen-g5.expect.min_vram_gb must be a number, got 'lots'" in run.stderr
    assert "inventory.yaml:11" in run.stderr


def test_wrong_type_coming_from_a_variable_names_that_variable(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ubuntu\n    port: ${QWEN_PORT}"))
    project.write(".env", ENV + "QWEN_PORT=twenty-two\n")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "port must be an integer" in run.stderr and "QWEN_PORT" in run.stderr


def test_unknown_field_is_refused_with_the_allowed_ones(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ubuntu\n    hostt: x"))
    project.write(".env", ENV)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "unknown field 'instances.qwen-g5.hostt'" in run.stderr
    assert "inventory.yaml:7" in run.stderr
    assert "host" in run.stderr  # the hint lists the allowed fields


def test_instance_alone_picks_its_only_job(project):
    project.write("inventory.yaml", INVENTORY)
    run = project.orch("show", "--instance", "local", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["job"]["name"] == "demo"


def test_instance_with_several_jobs_is_ambiguous_for_commands_that_need_one(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("deploy", "--instance", "qwen-g5")
    assert_clean_failure(run)
    assert "instance qwen-g5 has several jobs (qwen, qwen-b); which one?" in run.stderr


def test_relative_paths_resolve_beside_the_inventory(project):
    project.write("inventory.yaml", INVENTORY)
    run = project.orch("show", "demo", "--json")
    doc = run.json()
    assert doc["instance"]["work_dir"] == str(project.root / "work")
    assert doc["job"]["dataset"] == str(project.root / "data.jsonl")


def test_missing_inventory_says_how_to_point_at_one(project):
    run = project.orch("show", "demo")
    assert_clean_failure(run)
    assert "--inventory" in run.stderr


def test_a_named_env_file_that_does_not_exist_is_an_error(project):
    project.write("inventory.yaml", INVENTORY)
    run = project.orch("--env-file", "prod.env", "show", "demo")
    assert_clean_failure(run)
    assert "prod.env does not exist" in run.stderr


def test_secrets_from_env_file_are_masked_in_output(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ${DEPLOY_TOKEN}"))
    project.write(".env", ENV + "DEPLOY_TOKEN=s3cr3t-value-123\n")
    run = project.orch("show", "qwen", "--json")
    assert run.code == 0, run.stderr
    assert "s3cr3t-value-123" not in run.stdout + run.stderr
    assert json.loads(run.stdout)["instance"]["user"] == "****"


def test_json_mode_prints_the_error_as_one_json_document(project):
    project.write("inventory.yaml", INVENTORY)
    run = project.orch("show", "nope", "--json")
    assert run.code == 2
    doc = json.loads(run.stdout)
    assert doc["ok"] is False and "unknown job" in doc["error"]


def test_bad_s3_uri_in_a_job_is_refused(project):
    project.write("inventory.yaml", INVENTORY.replace("s3://orch-demo/tiny/", "/local/path"))
    run = project.orch("show", "demo")
    assert_clean_failure(run)
    assert "s3://bucket/prefix/" in run.stderr


def test_expectations_remember_the_variable_they_came_from(project):
    project.write("inventory.yaml", INVENTORY.replace("      gpu: A10G", "      gpu: A10G\n      instance_id: ${QWEN_ID}"))
    project.write(".env", ENV + "QWEN_ID=i-0123456789abcdef0\n")
    doc = project.orch("show", "qwen", "--json").json()
    assert doc["instance"]["expect"]["instance_id"] == "i-0123456789abcdef0"
    assert doc["origins"]["expect.instance_id"].startswith("QWEN_ID in ")


def test_a_job_named_with_another_instance_is_refused_rather_than_moved(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    run = project.orch("show", "demo", "--instance", "qwen-g5")
    assert_clean_failure(run)
    assert "job demo is bound to instance local, not qwen-g5" in run.stderr


def test_a_run_id_alone_names_its_job_and_so_its_instance(project):
    from orchestrator.inventory import load_inventory

    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV)
    inv = load_inventory(project.root / "inventory.yaml")
    job, instance = inv.resolve(None, None, need_job=False, run_id="qwen-b-20261121-101500-ab12")
    assert (job.name, instance.name) == ("qwen-b", "qwen-g5")


def test_a_misspelled_recipe_or_override_is_refused_before_anything_connects(project):
    project.write("data.jsonl", '{"prompt": "What is 2+2?", "completion": "4.", "style": "TERSE"}\n')
    project.write("inventory.yaml", INVENTORY.replace("recipe: qwen3-14b-verbosity\n    dataset: data.jsonl\n"
                                                      "    weights: s3://example-bucket/models/qwen/\n  qwen-b",
                                                      "recipe: qwen3-14b-verbosty\n    dataset: data.jsonl\n"
                                                      "    weights: s3://example-bucket/models/qwen/\n  qwen-b"))
    project.write(".env", ENV)
    run = project.orch("train", "qwen")  # qwen-g5 is 203.0.113.10: nothing may connect to it
    assert_clean_failure(run)
    assert "unknown recipe 'qwen3-14b-verbosty'" in run.stderr and "qwen3-14b-verbosity" in run.stderr
    project.write("inventory.yaml", INVENTORY.replace("    recipe: tiny-verbosity\n",
                                                      "    recipe: tiny-verbosity\n    overrides: {num_train_epoch: 1}\n"))
    run = project.orch("deploy", "demo")
    assert_clean_failure(run)
    assert "unknown recipe field 'num_train_epoch'" in run.stderr and "num_train_epochs" in run.stderr


def test_a_line_the_env_file_cannot_parse_is_named_with_its_line(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV + "BROKEN LINE WITHOUT EQUALS 'x\n")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert ".env:3: cannot parse" in run.stderr


def test_a_secret_with_the_wrong_type_is_not_echoed(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ubuntu\n    port: ${DB_PASSWORD}"))
    project.write(".env", ENV + "DB_PASSWORD=hunter2\n")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "hunter2" not in run.stderr and "masked value" in run.stderr
