"""Which validators run on which kind, in which order, and the versions they report."""

from __future__ import annotations

from .cfnlint import CfnLint
from .checkov import Checkov
from .hcllint import HclLint
from .helm import HelmChart
from .kubernetes import KubernetesValidate
from .pulumi import PulumiCheck
from .terraform import TerraformFmt, TerraformValidate
from .toolchain import Toolchain
from .validator import Validator

PLAN = {
    "terraform": (TerraformFmt, TerraformValidate, HclLint, Checkov),
    "cloudformation": (CfnLint,),
    "kubernetes": (KubernetesValidate,),
    "helm": (HelmChart, KubernetesValidate),      # the Kubernetes validator checks the rendered chart
    "pulumi": (PulumiCheck,),
}


def validators_for(kind: str, toolchain: Toolchain) -> list[Validator]:
    return [cls(toolchain) for cls in PLAN[kind]]


def tool_versions(toolchain: Toolchain, kinds=None) -> dict[str, str]:
    """Each validator's version as its tool prints it (one subprocess per tool, once per Toolchain)."""
    seen: dict[str, str] = {}
    for kind, classes in PLAN.items():
        if kinds is not None and kind not in kinds:
            continue
        for cls in classes:
            if cls.name not in seen:
                seen[cls.name] = cls(toolchain).version()
    return seen
