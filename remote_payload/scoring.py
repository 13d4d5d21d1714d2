"""Scores of a binary classification: accuracy, precision, recall, F1, the confusion matrix, unparseable answers,
and where two models disagree (seed 003's compare_base_vs_lora / analyze_differences). Stdlib only.

An unparseable answer (None) is wrong: it counts against accuracy, and as a false negative when the label is
positive (a false positive when it is negative never happens: nothing was predicted). F1 is that of the positive
label, as seed 003 reports it.
"""

from __future__ import annotations

from typing import Any


def _ratio(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


def score(labels: list[str], predictions: list[str | None], positive: str, negative: str) -> dict[str, Any]:
    """Metrics of `predictions` (label words or None) against `labels` (label words)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    tp = sum(y == positive and p == positive for y, p in zip(labels, predictions))
    fp = sum(y == negative and p == positive for y, p in zip(labels, predictions))
    tn = sum(y == negative and p == negative for y, p in zip(labels, predictions))
    fn = sum(y == positive and p != positive for y, p in zip(labels, predictions))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 6) if precision + recall else 0.0
    return {"samples": len(labels), "accuracy": _ratio(tp + tn, len(labels)), "precision": precision,
            "recall": recall, "f1": f1, "unparseable": sum(p is None for p in predictions),
            "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn,
                          "unparseable_positive": sum(y == positive and p is None for y, p in zip(labels, predictions)),
                          "unparseable_negative": sum(y == negative and p is None for y, p in zip(labels, predictions))},
            "support": {positive: sum(y == positive for y in labels), negative: sum(y == negative for y in labels)}}


def disagreements(labels: list[str], base: list[str | None], tuned: list[str | None]) -> dict[str, Any]:
    """Which samples the two models answer differently, and who was right there."""
    rows = [i for i, (b, t) in enumerate(zip(base, tuned)) if b != t]
    return {"count": len(rows), "indices": rows,
            "tuned_right_base_wrong": sum(tuned[i] == labels[i] for i in rows),
            "base_right_tuned_wrong": sum(base[i] == labels[i] for i in rows),
            "both_wrong": sum(base[i] != labels[i] and tuned[i] != labels[i] for i in rows)}
