"""A recipe's task and its typed evaluation section.

* `verbosity`: style tokens; the adapter must make VERBOSE answers `gate` times longer than TERSE ones.
* `classification`: the answer is one of two label words (seed 003: "Yes"/"No"); accuracy, F1, precision and
  recall of greedy answers, the same answers inference gets.
* `generation`: plain prompt-completion SFT; evaluation runs the named validators on the answers (the registry in
  `remote_payload/validators.py`: `iac-terraform`, `iac-cloudformation`, `iac-kubernetes`, `iac-helm`,
  `iac-pulumi`, each remote_payload/iac's validators for one kind).

Each section is a frozen dataclass checked in `__post_init__`, like `Recipe` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..validators import VALIDATORS
from .checks import check_choice, check_positive, check_types, fail


@dataclass(frozen=True)
class GenerationPreset:
    """How one style is decoded during evaluation (passed to `model.generate`); sampling settings not named here
    (e.g. top_k) come from the model's generation_config.json."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        owner = "generation preset"
        check_types(self, owner)
        check_positive(self, owner, ("max_new_tokens", "temperature"))
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            fail(owner, "min_new_tokens", f"must be between 0 and max_new_tokens={self.max_new_tokens} "
                                          f"(got {self.min_new_tokens})")
        if not 0 < self.top_p <= 1:
            fail(owner, "top_p", f"must be in (0, 1] (got {self.top_p})")

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass(frozen=True)
class VerbosityEval:
    """Held-out questions answered once per style; the VERBOSE/TERSE mean-token ratio must reach `gate`."""

    terse: GenerationPreset = field(default_factory=lambda: GenerationPreset(max_new_tokens=20))
    verbose: GenerationPreset = field(default_factory=lambda: GenerationPreset(max_new_tokens=100))
    gate: float = 3.0
    batch_size: int = 8
    after_train: bool = True

    metrics = ("loss",)

    def __post_init__(self) -> None:
        check_types(self, "evaluation (verbosity)")
        check_positive(self, "evaluation (verbosity)", ("gate", "batch_size"))


CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall")


@dataclass(frozen=True)
class ClassificationEval:
    """Greedy answers to labelled examples, read by `answers.extract_answer`, scored against the label."""

    positive: str = "Yes"
    negative: str = "No"
    max_new_tokens: int = 8
    batch_size: int = 16
    samples: int = 1000              # eval examples answered by generation at each evaluation (seed: gen_eval_samples)
    gate_metric: str = "accuracy"
    gate: float = 0.5
    after_train: bool = True

    metrics = ("loss", *CLASSIFICATION_METRICS)

    def __post_init__(self) -> None:
        owner = "evaluation (classification)"
        check_types(self, owner)
        check_positive(self, owner, ("max_new_tokens", "batch_size", "samples"))
        check_choice(self, owner, "gate_metric", CLASSIFICATION_METRICS)
        if not 0 <= self.gate <= 1:
            fail(owner, "gate", f"must be in [0, 1]: it is a minimum {self.gate_metric} (got {self.gate})")
        for name in ("positive", "negative"):
            word = getattr(self, name)
            if not word.strip() or word != word.strip() or "\n" in word:
                fail(owner, name, f"must be one word or phrase without surrounding spaces (got {word!r})")
        if self.positive.lower() == self.negative.lower():
            fail(owner, "negative", f"must differ from positive (both are {self.positive!r})")


@dataclass(frozen=True)
class GenerationEval:
    """Answers to held-out prompts, checked by the named validators (remote_payload/validators.py)."""

    max_new_tokens: int = 256
    batch_size: int = 8
    samples: int = 100
    validators: tuple[str, ...] = ()
    gate: float = 0.0                # minimum share of answers every validator accepts; 0: report only
    after_train: bool = False

    metrics = ("loss",)

    def __post_init__(self) -> None:
        owner = "evaluation (generation)"
        check_types(self, owner)
        check_positive(self, owner, ("max_new_tokens", "batch_size", "samples"))
        if not 0 <= self.gate <= 1:
            fail(owner, "gate", f"must be in [0, 1]: it is a minimum pass rate (got {self.gate})")
        for name in self.validators:
            if name not in VALIDATORS:
                known = ", ".join(sorted(VALIDATORS)) or "none registered yet"
                fail(owner, "validators", f"names unknown validator {name!r} (known: {known})")


SECTIONS = {"verbosity": VerbosityEval, "classification": ClassificationEval, "generation": GenerationEval}
TASKS = tuple(SECTIONS)
Section = VerbosityEval | ClassificationEval | GenerationEval

# job.json overrides written before tasks existed, flat on the recipe: where each lives now
LEGACY_EVAL_KEYS = {"eval_terse": "terse", "eval_verbose": "verbose", "eval_gate": "gate",
                    "eval_batch_size": "batch_size", "eval_after_train": "after_train"}
