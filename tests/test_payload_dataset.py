"""Datasets in the three documented formats load; every bad line is reported as file:line: reason, before any
model is loaded."""

from __future__ import annotations

import json
import time

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from remote_payload.dataset import load_dataset, parse_record
from remote_payload.errors import DatasetError
from tests.conftest_payload import DEMO_DATASET, ROOT, call_main, make_bundle

pytestmark = pytest.mark.timeout(60)


def write_jsonl(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_the_three_formats_become_the_same_conversation(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "What is 2+2?", "completion": "4", "style": "terse"},
        {"system": "", "instruction": "What is 2+2?", "input": "", "output": "4", "style": "TERSE"},
        {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
         "style": "<STYLE_TERSE>"},
    ])
    examples = load_dataset(path).examples
    assert [e.fmt for e in examples] == ["prompt_completion", "instruction", "chat"]
    assert [(e.style, e.messages, e.completion) for e in examples] == 3 * [
        ("TERSE", ({"role": "user", "content": "What is 2+2?"},), "4")]


def test_a_style_token_in_the_prompt_sets_the_style_and_is_taken_out_of_the_text():
    example = parse_record({"prompt": "<STYLE_VERBOSE>\nExplain DNS.", "completion": "DNS maps names..."}, "f:1")
    assert example.style == "VERBOSE"
    assert example.messages == ({"role": "user", "content": "Explain DNS."},)


def test_an_instruction_with_input_and_system_becomes_a_system_and_user_turn():
    example = parse_record({"system": "Be precise.", "instruction": "Summarise:", "input": "Long text.",
                            "output": "Short.", "style": "TERSE"}, "f:1")
    assert example.messages == ({"role": "system", "content": "Be precise."},
                                {"role": "user", "content": "Summarise:\n\nLong text."})


def test_a_seed_000_prerendered_chatml_prompt_is_parsed_back_into_turns():
    example = parse_record({"prompt": "<|im_start|>user\n<STYLE_TERSE>\nWhat is 2+2?<|im_end|>\n"
                                      "<|im_start|>assistant\n", "completion": "4<|im_end|>"}, "f:1")
    assert (example.style, example.completion, example.prerendered) == ("TERSE", "4", True)
    assert example.messages == ({"role": "user", "content": "What is 2+2?"},)


def test_a_seed_002_prerendered_inst_prompt_is_parsed_back_into_turns():
    example = parse_record({"prompt": "<s>[INST] <STYLE_TERSE>\nWhat is rate limiting? [/INST]",
                            "completion": "Rate limiting controls request frequency.</s>"}, "f:1")
    assert example.messages == ({"role": "user", "content": "What is rate limiting?"},)
    assert example.completion == "Rate limiting controls request frequency."


def test_every_bad_line_is_reported_with_file_line_and_reason(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "fine", "completion": "ok", "style": "TERSE"},
        '{"prompt": "broken",',
        {"prompt": "q", "style": "TERSE"},
        {"prompt": "q", "completion": "a", "style": "CHATTY"},
        {"prompt": "q", "completion": "   ", "style": "VERBOSE"},
        {"instruction": "q", "output": "a"},
        {"prompt": "<STYLE_TERSE>\nq", "completion": "a", "style": "VERBOSE"},
        {"messages": [{"role": "user", "content": "q"}], "style": "TERSE"},
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "b"}], "style": "TERSE"},
        {"question": "q", "answer": "a"},
        [1, 2],
        {"prompt": "<STYLE_LOUD>\nq", "completion": "a"},
        {"prompt": "q", "completion": "<STYLE_TERSE> a", "style": "TERSE"},
        {"instruction": 5, "output": "a", "style": "TERSE"},
    ])
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert err.value.problems == [
        "bad.jsonl:2: bad JSON: Expecting property name enclosed in double quotes (column 21)",
        'bad.jsonl:3: missing field "completion"',
        "bad.jsonl:4: unknown style 'CHATTY' (expected TERSE or VERBOSE)",
        "bad.jsonl:5: empty completion: the answer to train on is empty",
        'bad.jsonl:6: no style: add "style": "TERSE" or "VERBOSE", or start the user turn with '
        "<STYLE_TERSE> / <STYLE_VERBOSE>",
        'bad.jsonl:7: "style" says VERBOSE but the prompt carries <STYLE_TERSE>',
        "bad.jsonl:8: the last message must be the assistant answer to train on",
        "bad.jsonl:9: turns must be: optional system, then user/assistant alternating starting with user "
        "(got assistant -> user -> assistant)",
        "bad.jsonl:10: unrecognised record with keys ['answer', 'question']: expected {\"prompt\", \"completion\"}, "
        "{\"instruction\", \"output\", ...}, {\"messages\"} or {\"history_titles\", \"candidate_title\", \"label\"} "
        "(see remote_payload/formats.py)",
        "bad.jsonl:11: expected a JSON object, got list",
        "bad.jsonl:12: unknown style token <STYLE_LOUD> (expected <STYLE_TERSE> or <STYLE_VERBOSE>)",
        "bad.jsonl:13: style token <STYLE_TERSE> inside the answer; it belongs in the user turn",
        'bad.jsonl:14: field "instruction" must be a string, got int',
    ]
    assert "13 bad line(s) of 14; nothing was trained" in str(err.value)
    assert "bad.jsonl:14" in str(err.value)


def test_non_utf8_bytes_are_reported_on_their_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"prompt": "ok", "completion": "a", "style": "TERSE"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert err.value.problems == ["latin.jsonl:2: not UTF-8 (invalid continuation byte at byte 15)"]


def test_an_empty_or_missing_file_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no examples"):
        load_dataset(write_jsonl(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "absent.jsonl")


def test_the_shipped_datasets_load_cleanly_with_both_styles_balanced():
    demo = load_dataset(DEMO_DATASET)
    assert demo.counts["by_style"] == {"TERSE": 194, "VERBOSE": 194}
    assert set(demo.counts["by_format"]) == {"prompt_completion", "instruction", "chat"}
    example = load_dataset(ROOT / "training_data" / "verbosity_pairs_example.jsonl")
    assert example.counts["by_style"] == {"TERSE": 12, "VERBOSE": 12}


def test_the_demo_dataset_never_contains_a_held_out_evaluation_question():
    from remote_payload.evaluate import load_prompts

    held_out = {p.lower() for p in load_prompts()}
    assert len(held_out) == 25
    trained = {m["content"].lower() for e in load_dataset(DEMO_DATASET).examples for m in e.messages
               if m["role"] == "user"}
    assert not held_out & trained


def test_training_refuses_a_bad_dataset_with_exit_2_before_loading_any_model(tmp_path):
    from remote_payload import train

    bad = write_jsonl(tmp_path / "src.jsonl", [{"prompt": "q", "completion": "a", "style": "TERSE"},
                                               {"prompt": "q", "completion": "", "style": "TERSE"}])
    bundle = make_bundle(tmp_path / "bundle", bad)
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tmp_path / "no-model"),
                                  "--run-dir", str(run_dir)])
    record = json.loads((run_dir / "run.json").read_text())
    assert code == 2
    assert record["status"] == "failed" and record["error"]["type"] == "DatasetError"
    assert "src.jsonl:2: empty completion" in record["error"]["message"]
    # the model directory does not even exist: nothing model-related was touched
    assert "parameters" not in record and "hardware" not in record and "load_model_seconds" not in record["timings"]
    assert time.monotonic() - t0 < 20
