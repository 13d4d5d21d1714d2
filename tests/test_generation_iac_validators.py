"""A generation recipe can gate on IaC: the `iac-<kind>` validators of remote_payload/validators.py run
remote_payload/iac's real validators on one answer (with their offline flags) and say what each found."""

from __future__ import annotations

import pytest

from remote_payload.recipes import GenerationEval
from remote_payload.recipes.checks import RecipeError
from tests.fixtures.validators import ROOT

K8S = ROOT / "tests" / "data" / "iac" / "kubernetes"
CFN = ROOT / "tests" / "data" / "iac" / "cloudformation"


def fenced(path, language="yaml") -> str:
    return f"Here is the manifest:\n\n```{language}\n{path.read_text()}```\n"


@pytest.fixture
def validators_dir(validators_venv, monkeypatch):
    monkeypatch.setenv("ORCH_VALIDATORS_DIR", str(validators_venv.parent))


def test_a_generation_recipe_may_name_the_iac_validators_and_no_unknown_one():
    assert GenerationEval(validators=("iac-terraform", "iac-kubernetes")).validators
    with pytest.raises(RecipeError, match="unknown validator 'iac-ansible'"):
        GenerationEval(validators=("iac-ansible",))


def test_a_valid_manifest_passes_and_a_wrongly_typed_one_fails_with_the_tools_message(validators_dir):
    from remote_payload.validators import run_validators

    good = run_validators(["iac-kubernetes"], fenced(K8S / "valid.yaml"))["iac-kubernetes"]
    bad = run_validators(["iac-kubernetes"], fenced(K8S / "wrong_type.yaml"))["iac-kubernetes"]
    assert good["passed"] and "pass" in good["detail"]
    assert not bad["passed"] and "fail" in bad["detail"] and "(" in bad["detail"]    # the finding is quoted


def test_an_answer_without_code_of_the_kind_fails_saying_so(validators_dir):
    from remote_payload.validators import run_validators

    result = run_validators(["iac-cloudformation"], "I cannot help with that.")["iac-cloudformation"]
    assert not result["passed"] and "no cloudformation code" in result["detail"]


def test_a_cloudformation_template_with_a_bad_property_fails(validators_dir):
    from remote_payload.validators import run_validators

    assert run_validators(["iac-cloudformation"], fenced(CFN / "valid.yaml"))["iac-cloudformation"]["passed"]
    bad = run_validators(["iac-cloudformation"], fenced(CFN / "bad_property.yaml"))["iac-cloudformation"]
    assert not bad["passed"] and "cfn-lint: fail" in bad["detail"]
