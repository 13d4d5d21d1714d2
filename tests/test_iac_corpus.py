"""The example IaC corpus is real, valid IaC (checked by the real validators, offline) and the held-out
prompts say which come from the training set."""

from __future__ import annotations

import json
import sys

import pytest

from remote_payload.dataset import load_dataset
from remote_payload.iac.gates import VALIDATE
from remote_payload.iac.kinds import KINDS
from tests.fixtures.validators import ROOT, run_suite_offline

sys.path.insert(0, str(ROOT / "training_data"))
import make_iac_example  # noqa: E402

CORPUS = ROOT / "training_data" / "iac_example.jsonl"
PROMPTS = ROOT / "training_data" / "iac_eval_prompts.jsonl"


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_shipped_files_are_what_the_generator_writes():
    corpus = make_iac_example.examples()
    assert rows(CORPUS) == corpus
    assert rows(PROMPTS) == make_iac_example.eval_prompts(corpus)


def test_the_corpus_is_in_the_iac_data_format_and_covers_every_kind():
    examples = rows(CORPUS)
    assert 40 <= len(examples) <= 80
    for ex in examples:
        assert {"system", "instruction", "input", "output", "style", "kind"} <= set(ex), ex.get("id")
        assert ex["kind"] in KINDS and ex["style"] in ("TERSE", "VERBOSE")
    counts = {kind: sum(ex["kind"] == kind for ex in examples) for kind in KINDS}
    assert min(counts.values()) >= 4, counts
    clouds = {c for ex in examples if ex["kind"] == "terraform" for c in ("aws", "google", "azurerm")
              if f'"hashicorp/{c}"' in ex["output"]}
    assert clouds == {"aws", "google", "azurerm"}
    assert load_dataset(CORPUS).counts["examples"] == len(examples)   # today's payload loader reads it as is


def test_eval_prompts_say_which_are_from_the_training_set_and_which_are_unseen():
    instructions = {ex["instruction"] for ex in rows(CORPUS)}
    prompts = rows(PROMPTS)
    train = [p for p in prompts if p["source"] == "train"]
    unseen = [p for p in prompts if p["source"] == "unseen"]
    assert len(train) >= 8 and len(unseen) >= 8 and len(train) + len(unseen) == len(prompts)
    assert all(p["instruction"] in instructions for p in train)
    assert not any(p["instruction"] in instructions for p in unseen)
    assert {p["kind"] for p in unseen} == set(KINDS) and {p["kind"] for p in train} == set(KINDS)


@pytest.fixture(scope="module")
def corpus_report(validators_venv, tmp_path_factory):
    answers = tmp_path_factory.mktemp("corpus") / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": ex["id"], "kind": ex["kind"], "prompt": ex["instruction"],
                                           "answer": ex["output"]}) + "\n" for ex in rows(CORPUS)))
    code, doc, _ = run_suite_offline(validators_venv, "--answers", str(answers))
    return code, doc


def test_every_corpus_example_passes_the_validators_offline(corpus_report):
    code, doc = corpus_report
    assert code == 0 and doc["ok"], doc["reason"]
    for result in doc["results"]:
        for name, verdict in result["verdicts"].items():
            allowed = {"pass", "unchecked"} if name == VALIDATE and not result["id"].startswith("terraform/aws_") \
                else {"pass"}
            assert verdict["status"] in allowed, (result["id"], name, verdict["findings"][:3])


def test_aws_examples_are_fully_checked_by_terraform_validate(corpus_report):
    _, doc = corpus_report
    aws = [r for r in doc["results"] if r["id"].startswith("terraform/aws_")]
    assert len(aws) >= 20
    assert all(r["verdicts"][VALIDATE]["status"] == "pass" and not r["verdicts"][VALIDATE]["unchecked"] for r in aws)
    others = [r for r in doc["results"] if r["id"].startswith(("terraform/gcp_", "terraform/azure_"))]
    assert all(r["verdicts"][VALIDATE]["unchecked"][0].startswith(("GCP: syntax", "Azure: syntax")) for r in others)
