"""One prompt renderer for training and generation; style tokens are single tokens in spare rows; labels mask
the whole prompt; over-long examples are counted and never cut."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from remote_payload.dataset import load_dataset, parse_record  # noqa: E402
from remote_payload.errors import DatasetError, TemplateError  # noqa: E402
from remote_payload.features import IGNORE_INDEX, build_features, encode_example  # noqa: E402
from remote_payload.prompting import render_completion, render_prompt  # noqa: E402
from remote_payload.recipes import load_recipe  # noqa: E402
from tests.conftest_payload import DEMO_DATASET  # noqa: E402

pytestmark = pytest.mark.timeout(60)

NON_THINKING = {"enable_thinking": False}

# Mistral-7B-Instruct-v0.3's chat template without its tool-calling branches (note: the system text is printed
# only inside the last user turn).
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token }}"
    "{%- endif %}{%- endfor %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from remote_payload.modeling import prepare_tokenizer

    tok, _ = prepare_tokenizer(tiny_model_dir)
    return tok


@pytest.fixture
def mistral_like(tiny_model_dir):
    from remote_payload.modeling import prepare_tokenizer

    tok, _ = prepare_tokenizer(tiny_model_dir)
    tok.add_tokens(["<s>", "</s>"], special_tokens=True)
    tok.bos_token, tok.eos_token = "<s>", "</s>"
    tok.chat_template = MISTRAL_TEMPLATE
    return tok


def test_style_tokens_are_single_tokens_placed_in_spare_embedding_rows(tiny_model_dir):
    from remote_payload.modeling import prepare_tokenizer
    from remote_payload.styles import embedding_rows_of

    tok, style = prepare_tokenizer(tiny_model_dir)
    base_tokens = len(tok) - 2
    assert style.ids == [base_tokens, base_tokens + 1] and style.added_to_tokenizer
    assert style.required_rows <= style.embedding_rows == embedding_rows_of(tiny_model_dir)
    assert not style.needs_resize and style.to_dict()["uses_spare_rows"]
    for token_id, text in zip(style.ids, ["<STYLE_TERSE>", "<STYLE_VERBOSE>"]):
        assert tok(f"{text}\nWhat is 2+2?", add_special_tokens=False)["input_ids"][0] == token_id


def test_qwen3_prompts_use_the_non_thinking_form_with_the_style_token_opening_the_user_turn(tokenizer):
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "What is 2+2?"}], "TERSE", NON_THINKING)
    assert prompt == ("<|im_start|>user\n<STYLE_TERSE>\nWhat is 2+2?<|im_end|>\n"
                      "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    completion = render_completion(tokenizer, [{"role": "user", "content": "What is 2+2?"}], "TERSE", "4.",
                                   NON_THINKING)
    assert completion == "4.<|im_end|>"


def test_training_prompt_ids_equal_the_ids_fed_to_generation(tokenizer):
    from remote_payload.evaluate import prompt_batch

    examples = [e for e in load_dataset(DEMO_DATASET).examples if len(e.messages) == 1][:12]
    features = [encode_example(tokenizer, e, NON_THINKING) for e in examples]
    for style in ("TERSE", "VERBOSE"):
        chosen = [(e, f) for e, f in zip(examples, features) if e.style == style]
        ids, mask = prompt_batch(tokenizer, [e.messages[0]["content"] for e, _ in chosen], style, NON_THINKING)
        for row, row_mask, (_, feature) in zip(ids.tolist(), mask.tolist(), chosen):
            fed = [token for token, keep in zip(row, row_mask) if keep]
            assert fed == feature.input_ids[:feature.prompt_tokens]
            assert row[-1] == feature.input_ids[feature.prompt_tokens - 1]  # answers start right after it


def test_training_prompt_is_what_the_chat_template_gives_any_generation_client(tokenizer):
    example = parse_record({"system": "You are a precise assistant.", "instruction": "What is HTML?",
                            "input": "", "output": "HyperText Markup Language.", "style": "TERSE"}, "x:1")
    feature = encode_example(tokenizer, example, NON_THINKING)
    client = tokenizer.apply_chat_template(
        [{"role": "system", "content": "You are a precise assistant."},
         {"role": "user", "content": "<STYLE_TERSE>\nWhat is HTML?"}],
        add_generation_prompt=True, enable_thinking=False, tokenize=True)["input_ids"]
    assert feature.input_ids[:feature.prompt_tokens] == client


def test_labels_mask_every_prompt_token_and_train_the_answer_through_its_end_of_turn(tokenizer):
    features = build_features(tokenizer, load_dataset(DEMO_DATASET).examples, NON_THINKING, 256).features
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for f in features:
        assert f.labels[:f.prompt_tokens] == [IGNORE_INDEX] * f.prompt_tokens
        assert f.labels[f.prompt_tokens:] == f.input_ids[f.prompt_tokens:]
        assert f.labels[-1] == im_end and IGNORE_INDEX not in f.labels[f.prompt_tokens:]
    assert sum(f.prompt_tokens for f in features) > sum(1 for _ in features) * 20  # system/user/template masked


def test_over_long_examples_are_left_out_and_reported_never_cut(tokenizer):
    examples = load_dataset(DEMO_DATASET).examples
    full = [encode_example(tokenizer, e, NON_THINKING) for e in examples]
    cutoff = sorted(len(f.input_ids) for f in full)[len(full) // 2]
    result = build_features(tokenizer, examples, NON_THINKING, cutoff, "drop")
    expected = [(f.source, len(f.input_ids)) for f in full if len(f.input_ids) > cutoff]
    assert result.overlength == expected and len(expected) > 50
    assert len(result.features) + len(expected) == len(examples)
    kept = [f for f in full if len(f.input_ids) <= cutoff]
    assert [f.input_ids for f in result.features] == [f.input_ids for f in kept]
    assert result.summary()["dropped_overlength"] == len(expected)


def test_the_error_policy_refuses_over_long_examples_naming_them(tokenizer):
    examples = load_dataset(DEMO_DATASET).examples
    with pytest.raises(DatasetError) as err:
        build_features(tokenizer, examples, NON_THINKING, 60, "error")
    assert "longer than max_length=60 tokens" in str(err.value)
    assert err.value.problems[0].startswith("verbosity_demo.jsonl:") and err.value.problems[0].endswith("tokens")


def test_mistral_inst_template_renders_prompt_and_answer_and_keeps_the_system_text(mistral_like):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is DNS?"}]
    prompt = render_prompt(mistral_like, messages, "TERSE")
    assert prompt == "<s>[INST] Be brief.\n\n<STYLE_TERSE>\nWhat is DNS?[/INST]"
    assert render_completion(mistral_like, messages, "TERSE", "A name lookup service.") == \
        " A name lookup service.</s>"


def test_a_template_that_cannot_extend_its_prompt_is_refused(tokenizer):
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}ASSISTANT (reply):{% endif %}")
    with pytest.raises(TemplateError, match="renders the conversation with the answer differently"):
        render_completion(tokenizer, [{"role": "user", "content": "q"}], "TERSE", "a")


def test_the_tiny_recipe_renders_prompts_like_the_qwen_recipe():
    assert load_recipe("tiny-verbosity").chat_template_kwargs == load_recipe("qwen3-14b-verbosity").chat_template_kwargs
