"""`attn_implementation: auto` picks flash_attention_2 only where it can run, else sdpa, and says why; an
explicit choice that cannot run is refused with the reason."""

from __future__ import annotations

import dataclasses

import pytest

from remote_payload.attention import choose_attention
from remote_payload.errors import ModelError
from remote_payload.recipes import load_recipe

pytestmark = pytest.mark.timeout(60)


def test_auto_is_sdpa_on_cpu_and_without_flash_attn_and_says_why(tiny_model_dir):
    cpu = load_recipe("tiny-verbosity")
    assert choose_attention(cpu, tiny_model_dir) == {"requested": "auto", "chosen": "sdpa",
                                                     "reason": "no flash_attention_2: device is cpu"}
    gpu = load_recipe("qwen3-0.6b-movielens")   # a CUDA recipe on this machine, where flash_attn is not installed
    assert choose_attention(gpu, tiny_model_dir)["reason"] == \
        "no flash_attention_2: the flash_attn package is not installed"


def test_an_explicit_choice_is_kept_or_refused_with_the_reason(tiny_model_dir):
    eager = dataclasses.replace(load_recipe("tiny-verbosity"), attn_implementation="eager")
    assert choose_attention(eager, tiny_model_dir)["chosen"] == "eager"
    flash = load_recipe("qwen3-8b-movielens", {"attn_implementation": "flash_attention_2"})
    with pytest.raises(ModelError) as err:
        choose_attention(flash, tiny_model_dir)
    assert "flash_attention_2 cannot be used: the flash_attn package is not installed" in str(err.value)
    assert "attn_implementation: auto" in str(err.value)
