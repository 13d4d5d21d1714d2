"""Generate `training_data/iac_example.jsonl` (the example IaC corpus) and `iac_eval_prompts.jsonl` (held-out prompts).

    python training_data/make_iac_example.py        # rewrites both files from training_data/iac_sources/

Every example is a folder `iac_sources/<kind>/<slug>/` written by the project: the real IaC files (main.tf,
template.yaml, a Helm chart, __main__.py, ...) and `prompt.json` ({"instruction", "input", "style", "explain"}).
The answer (`output`) shows each file in a fenced block, named on the line before it when there are several,
the way a model should answer; VERBOSE answers add the explanation, TERSE ones do not. The Terraform AWS
examples use only resources and arguments hashicorp/aws 3.39.0 knows, so the offline `terraform validate`
checks them fully; GCP/Azure ones get syntax and structure checks only (tests/test_iac_corpus.py validates
every example with the real validators).

The eval prompts: every 4th example's prompt ("source": "train" - the tiny model can memorise these) plus
prompts written for no example ("source": "unseen"). Output is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SOURCES = ROOT / "iac_sources"
CORPUS = ROOT / "iac_example.jsonl"
EVAL_PROMPTS = ROOT / "iac_eval_prompts.jsonl"
SYSTEM = "You are an Infrastructure-as-Code assistant. Answer with complete, valid code that follows security best practices."
KIND_ORDER = ("terraform", "cloudformation", "kubernetes", "helm", "pulumi")
FENCE = {".tf": "hcl", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".py": "python", ".tpl": "yaml"}
INTRO = {"terraform": "Here is the Terraform configuration:", "cloudformation": "Here is the CloudFormation template:",
         "kubernetes": "Here is the manifest:", "helm": "Here is the chart:", "pulumi": "Here is the Pulumi program:"}

UNSEEN = [
    ("terraform", "Write Terraform for an S3 bucket that hosts access logs for other buckets, encrypted and private."),
    ("terraform", "Create a Terraform IAM role for ECS tasks with a policy that can read one Secrets Manager secret."),
    ("terraform", "Terraform for an SQS FIFO queue with content-based deduplication."),
    ("terraform", "Write Terraform for a GCP Cloud SQL PostgreSQL instance with a private IP only."),
    ("cloudformation", "CloudFormation template for a KMS key with rotation and an alias."),
    ("kubernetes", "Write a Kubernetes DaemonSet that runs a log collector on every node."),
    ("kubernetes", "Create a PodDisruptionBudget keeping at least 2 pods of app=api available."),
    ("helm", "Create a Helm chart for Redis as a StatefulSet with the storage size in values.yaml."),
    ("pulumi", "Write a Pulumi Python program for an SNS topic with an SQS subscription."),
]


def code_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "prompt.json")


def answer_text(kind: str, folder: Path, meta: dict) -> str:
    files = code_files(folder)
    parts = [INTRO[kind]]
    for path in files:
        name = path.relative_to(folder).as_posix()
        fence = "```" + FENCE.get(path.suffix, "")
        parts.append((f"`{name}`:\n" if len(files) > 1 else "") + f"{fence}\n{path.read_text().rstrip()}\n```")
    if meta["style"] == "VERBOSE" and meta.get("explain"):
        parts.append(meta["explain"])
    return "\n\n".join(parts)


def examples() -> list[dict]:
    out = []
    for kind in KIND_ORDER:
        for folder in sorted(p for p in (SOURCES / kind).iterdir() if p.is_dir()):
            meta = json.loads((folder / "prompt.json").read_text())
            out.append({"system": SYSTEM, "instruction": meta["instruction"], "input": meta.get("input", ""),
                        "output": answer_text(kind, folder, meta), "style": meta["style"], "kind": kind,
                        "id": f"{kind}/{folder.name}"})
    return out


def eval_prompts(corpus: list[dict]) -> list[dict]:
    train = [{"id": f"train-{i:02d}", "kind": ex["kind"], "system": SYSTEM, "instruction": ex["instruction"],
              "input": ex["input"], "source": "train", "example": ex["id"]} for i, ex in enumerate(corpus[::4])]
    seen = {ex["instruction"] for ex in corpus}
    unseen = []
    for i, (kind, instruction) in enumerate(UNSEEN):
        if instruction in seen:
            raise SystemExit(f"unseen prompt {instruction!r} is in the training set")
        unseen.append({"id": f"unseen-{i:02d}", "kind": kind, "system": SYSTEM, "instruction": instruction,
                       "input": "", "source": "unseen"})
    return train + unseen


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def main() -> int:
    corpus = examples()
    write_jsonl(CORPUS, corpus)
    prompts = eval_prompts(corpus)
    write_jsonl(EVAL_PROMPTS, prompts)
    print(f"wrote {len(corpus)} examples to {CORPUS.name} and {len(prompts)} prompts to {EVAL_PROMPTS.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
