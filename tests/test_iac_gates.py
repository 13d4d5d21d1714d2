"""Seed 001's gates judged from verdicts, and the report built on them (no tools needed)."""

from __future__ import annotations

import pytest

from remote_payload.iac.gates import CHECKOV, LINT, VALIDATE, Gates, evaluate
from remote_payload.iac.report import build, format_text
from remote_payload.iac.verdict import Finding, Verdict


def tf_answer(i, validate="pass", lint=(), checkov=(), checkov_status=None):
    return {"id": f"a{i}", "kind": "terraform", "prompt": f"prompt {i}", "origin": "1 fenced block(s)",
            "files": {"main.tf": "..."},
            "verdicts": {VALIDATE: Verdict(VALIDATE, validate, [Finding("critical", "Unsupported argument")]
                                           if validate == "fail" else []),
                         LINT: Verdict(LINT, "fail" if "critical" in lint else "pass", [Finding(s, "x") for s in lint]),
                         CHECKOV: Verdict(CHECKOV, checkov_status or ("fail" if {"high", "critical"} & set(checkov) else "pass"),
                                          [Finding(s, "x", rule="CKV_AWS_20") for s in checkov])}}


def gate(results, name):
    return next(g for g in results if g["gate"] == name)


def test_the_validate_gate_passes_at_85_percent_and_fails_below():
    passing = [tf_answer(i) for i in range(17)] + [tf_answer(17 + i, "fail") for i in range(3)]
    assert gate(evaluate("terraform", passing, Gates()), "terraform validate pass rate")["status"] == "pass"  # 17/20
    failing = [tf_answer(i) for i in range(16)] + [tf_answer(16 + i, "fail") for i in range(4)]
    result = gate(evaluate("terraform", failing, Gates()), "terraform validate pass rate")
    assert (result["status"], result["value"], result["detail"]) == ("fail", 0.8, "16/20 passed")


def test_answers_validate_could_not_check_are_left_out_of_the_rate_and_said_so():
    answers = [tf_answer(0), tf_answer(1, "unchecked")]
    result = gate(evaluate("terraform", answers, Gates()), "terraform validate pass rate")
    assert (result["status"], result["detail"]) == ("pass", "1/1 passed, 1 not checked")


def test_a_gate_with_nothing_to_judge_is_unchecked_not_passed():
    result = gate(evaluate("terraform", [tf_answer(0, "unchecked")], Gates()), "terraform validate pass rate")
    assert result["status"] == "unchecked"


def test_lint_and_checkov_gates_count_only_pass_cases():
    answers = [tf_answer(0, "fail", lint=("critical",), checkov=("high",)), tf_answer(1, checkov=("unrated",))]
    results = evaluate("terraform", answers, Gates())
    assert gate(results, "critical lint findings on pass cases")["status"] == "pass"
    assert gate(results, "high-severity checkov findings on pass cases")["status"] == "pass"
    answers.append(tf_answer(2, checkov=("high",)))
    assert gate(evaluate("terraform", answers, Gates()), "high-severity checkov findings on pass cases")["value"] == 1


def test_the_report_fails_when_one_gate_fails_and_names_the_failure():
    answers = [tf_answer(0), tf_answer(1, checkov=("high",))]
    doc = build(answers, Gates(), {"checkov": "3.3.30"}, "terraform (test)")
    assert doc["ok"] is False and doc["reason"] == "1 gate(s) failed"
    failure = doc["kinds"]["terraform"]["failures"][0]
    assert failure["answer"] == "a1" and failure["validator"] == CHECKOV and "CKV_AWS_20" in failure["messages"][0]
    assert doc["kinds"]["terraform"]["validators"][CHECKOV]["pass_rate"] == 0.5
    assert "FAIL a1 checkov" in format_text(doc)


def test_a_report_where_no_gate_could_be_judged_is_not_ok():
    answer = tf_answer(0, "unchecked", checkov_status="unchecked")
    answer["verdicts"][LINT].status = "unchecked"
    doc = build([answer], Gates(), {}, "none")
    assert doc["ok"] is False and doc["reason"] == "no gate could be judged"


def test_what_could_not_be_checked_is_counted_per_answer():
    answers = [tf_answer(i, "unchecked") for i in range(2)]
    for answer in answers:
        answer["verdicts"][VALIDATE].unchecked = ["GCP: syntax and structure only, no provider offline"]
    notes = build(answers, Gates(), {}, "x")["kinds"]["terraform"]["not_checked"]
    assert notes == [{"validator": VALIDATE, "what": "GCP: syntax and structure only, no provider offline", "answers": 2}]


@pytest.mark.parametrize("override,message", [({"terraform_validate_min_pass_rate": 1.5}, "fraction"),
                                              ({"checkov_high_max": -1}, "whole number"),
                                              ({"tflint_max": 0}, "unknown gate")])
def test_gate_thresholds_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        Gates.from_json(override)
