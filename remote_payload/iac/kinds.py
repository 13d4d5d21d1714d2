"""The kinds of Infrastructure-as-Code the validators know, and how a file or a fence names one."""

from __future__ import annotations

KINDS = ("terraform", "cloudformation", "kubernetes", "helm", "pulumi")

_ALIASES = {
    "tf": "terraform", "hcl": "terraform", "opentofu": "terraform", "tofu": "terraform",
    "cfn": "cloudformation", "cloud-formation": "cloudformation",
    "k8s": "kubernetes", "kube": "kubernetes",
    "helm-chart": "helm", "chart": "helm",
}


def normalize_kind(value: object) -> str:
    """'TF' -> 'terraform'; raises ValueError naming the accepted kinds."""
    if isinstance(value, str):
        text = value.strip().lower()
        text = _ALIASES.get(text, text)
        if text in KINDS:
            return text
    raise ValueError(f"unknown IaC kind {value!r} (expected one of: {', '.join(KINDS)})")


def guess_kind(name: str, text: str) -> str | None:
    """The kind of one file from its name and content, or None when it is none of them."""
    lower = name.lower()
    if lower.endswith((".tf", ".hcl", ".tfvars")):
        return "terraform"
    if lower.endswith(".py"):
        return "pulumi" if "import pulumi" in text else None
    if lower.endswith(("chart.yaml", "chart.yml")) or "{{" in text and "}}" in text and "/templates/" in f"/{lower}":
        return "helm"
    if lower.endswith((".yaml", ".yml", ".json", ".template")):
        if "AWSTemplateFormatVersion" in text or ("Resources" in text and "AWS::" in text):
            return "cloudformation"
        if "apiVersion" in text and "kind" in text:
            return "kubernetes"
    return None
