"""What a line must hold depends on the recipe's task: seed 003's MovieLens training and test formats load for a
classification recipe, with label words checked line by line; verbosity still needs a style."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from remote_payload.dataset import DataSpec, load_dataset, parse_record  # noqa: E402
from remote_payload.errors import DatasetError  # noqa: E402
from remote_payload.movielens import INSTRUCTION, render_input  # noqa: E402
from remote_payload.recipes import load_recipe  # noqa: E402
from tests.conftest_payload import ROOT  # noqa: E402

pytestmark = pytest.mark.timeout(60)

CLASSIFY = DataSpec.from_recipe(load_recipe("qwen3-0.6b-movielens"))
DEMO = {split: ROOT / "training_data" / f"movielens_demo_{split}.jsonl" for split in ("train", "eval", "test")}


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_a_seed_003_training_record_becomes_system_and_user_turns_with_a_label_word():
    example = parse_record({"instruction": "Predict whether the user will like the candidate movie.",
                            "input": "User's last 2 watched movies:\n1. Heat (1995)\n2. Alien (1979)\n\n"
                                     "Candidate movie: Aliens (1986)", "output": "yes.",
                            "system": "You are a movie recommendation assistant."}, "t:1", CLASSIFY)
    assert (example.label, example.completion, example.style, example.fmt) == ("Yes", "Yes", None, "instruction")
    assert [m["role"] for m in example.messages] == ["system", "user"]


def test_a_seed_003_test_record_renders_the_same_prompt_as_its_training_record():
    history, candidate = ["Heat (1995) (rating ≈ 4.0)", "Alien (1979)"], "Aliens (1986)"
    raw = parse_record({"history_titles": history, "candidate_title": candidate, "label": 1, "user_id": 7},
                       "t:1", CLASSIFY)
    trained = parse_record({"instruction": INSTRUCTION, "input": render_input(history, candidate), "output": "Yes"},
                           "t:2", CLASSIFY)
    assert raw.messages == trained.messages and raw.label == trained.label == "Yes"
    assert raw.messages[0] == {"role": "system", "content": CLASSIFY.system_prompt}   # the recipe's system prompt
    assert raw.meta["user_id"] == 7 and raw.meta["candidate_title"] == candidate


def test_bad_classification_lines_are_all_reported_as_file_line_reason(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"instruction": "Will they like it?", "input": "...", "output": "Maybe"},
        {"history_titles": [], "candidate_title": "Heat", "label": 1},
        {"history_titles": ["Heat"], "candidate_title": "Alien"},
        {"history_titles": ["Heat"], "candidate_title": "Alien", "label": 2},
        {"prompt": "<STYLE_TERSE>\nWill they like Alien?", "completion": "No"},
        {"history_titles": ["Heat"], "candidate_title": "Alien", "label": 0, "user_id": [1]},
        {"instruction": "Will they like it?", "input": "...", "output": "No"},
    ])
    with pytest.raises(DatasetError) as err:
        load_dataset(path, CLASSIFY)
    assert err.value.problems == [
        "bad.jsonl:1: answer 'Maybe' is not a label word (expected 'Yes' or 'No', or 1/0 in a \"label\" field)",
        'bad.jsonl:2: field "history_titles" must be a non-empty list of movie titles (strings)',
        'bad.jsonl:3: missing field "label" (1/0, true/false or the label word)',
        "bad.jsonl:4: answer 2 is not a label word (expected 'Yes' or 'No', or 1/0 in a \"label\" field)",
        "bad.jsonl:5: style token <STYLE_TERSE> in a classification example: style tokens are only for "
        "verbosity recipes",
        'bad.jsonl:6: field "user_id" must be a number or a string, got list',
    ]
    assert "6 bad line(s) of 7; nothing was trained (checked as classification data)" in str(err.value)


def test_the_task_decides_what_a_line_needs():
    record = {"instruction": "What is 2+2?", "output": "4"}
    with pytest.raises(Exception, match="no style"):
        parse_record(record, "t:1", DataSpec("verbosity"))
    with pytest.raises(Exception, match="not a label word"):
        parse_record(record, "t:1", CLASSIFY)
    plain = parse_record(record, "t:1", DataSpec("generation"))
    assert (plain.completion, plain.style, plain.label) == ("4", None, None)
    with pytest.raises(Exception, match="cannot train a verbosity recipe"):
        parse_record({"history_titles": ["Heat"], "candidate_title": "Alien", "label": 1}, "t:1",
                     DataSpec("verbosity"))


def test_the_movielens_demo_files_are_balanced_and_split_by_user():
    spec = DataSpec.from_recipe(load_recipe("tiny-movielens"))
    sets = {split: load_dataset(path, spec) for split, path in DEMO.items()}
    assert {s: d.counts["by_label"] for s, d in sets.items()} == {
        "train": {"No": 480, "Yes": 480}, "eval": {"No": 48, "Yes": 48}, "test": {"No": 100, "Yes": 100}}
    assert sets["test"].counts["by_format"] == {"movielens": 200}
    assert (sets["train"].counts["by_format"], sets["eval"].counts["by_format"]) == \
        ({"instruction": 960}, {"instruction": 96})
    histories = {s: {tuple(m["content"] for m in e.messages) for e in d.examples} for s, d in sets.items()}
    assert not histories["train"] & histories["test"] and not histories["train"] & histories["eval"]
    users = {json.loads(line)["user_id"] for line in DEMO["test"].read_text().splitlines()}
    assert len(users) == 40


def test_the_movielens_demo_generator_is_deterministic(tmp_path):
    import shutil
    import subprocess
    import sys

    before = {p: p.read_bytes() for p in DEMO.values()}
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "remote_payload", copy / "remote_payload", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "training_data").mkdir()
    shutil.copy(ROOT / "training_data" / "make_movielens_demo.py", copy / "training_data")
    subprocess.run([sys.executable, str(copy / "training_data" / "make_movielens_demo.py")], check=True,
                   capture_output=True, timeout=60)
    for path, data in before.items():
        assert (copy / "training_data" / path.name).read_bytes() == data
