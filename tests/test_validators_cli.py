"""`orch validators install|check`, run as users run them."""

from __future__ import annotations

from tests.conftest import orch
from tests.fixtures.validators import CACHE_ROOT

DATA = "tests/data/iac"


def test_install_reuses_the_cached_venv_and_reports_versions(validators_venv):
    run = orch("validators", "install", "--json", env={"ORCH_VALIDATORS_DIR": str(CACHE_ROOT)})
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["status"] == "cached" and doc["venv"] == str(validators_venv)
    assert doc["versions"]["checkov"] == "3.3.30"


def test_check_passes_valid_files_and_exits_0(validators_venv):
    run = orch("validators", "check", f"{DATA}/terraform/valid_aws", f"{DATA}/cloudformation/valid.yaml",
               env={"ORCH_VALIDATORS_DIR": str(CACHE_ROOT)})
    assert run.code == 0, run.stderr
    assert "PASS: all gates passed" in run.stderr and "terraform validate pass rate: PASS" in run.stderr


def test_check_fails_an_insecure_file_with_the_checkov_id_and_exits_1(validators_venv):
    run = orch("validators", "check", f"{DATA}/terraform/insecure_s3", "--json",
               env={"ORCH_VALIDATORS_DIR": str(CACHE_ROOT)})
    assert run.code == 1
    doc = run.json()
    assert doc["ok"] is False and "CKV_AWS_20" in doc["kinds"]["terraform"]["failures"][0]["messages"][0]


def test_check_refuses_a_missing_path_or_missing_validators_with_exit_2(tmp_path):
    missing = orch("validators", "check", "no/such/file.tf", env={"ORCH_VALIDATORS_DIR": str(tmp_path)})
    assert missing.code == 2 and "no such file or folder" in missing.stderr
    uninstalled = orch("validators", "check", f"{DATA}/terraform/valid_aws", "--json",
                       env={"ORCH_VALIDATORS_DIR": str(tmp_path)})
    assert uninstalled.code == 2 and "orch validators install" in uninstalled.json()["hint"]
