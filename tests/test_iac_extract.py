"""Code blocks come out of a model's answer by kind: one test per shape an answer takes (no tools needed)."""

from __future__ import annotations

import pytest

from remote_payload.iac.extract import extract
from remote_payload.iac.kinds import guess_kind, normalize_kind

TF = 'resource "aws_s3_bucket" "b" {\n  bucket = "x"\n}\n'


def test_a_fenced_hcl_block_becomes_main_tf():
    art = extract(f"Here you go:\n\n```hcl\n{TF}```\n\nThis creates a bucket.", "terraform")
    assert art.files == {"main.tf": TF}
    assert art.origin == "1 fenced block(s)"


def test_terraform_files_named_on_the_line_before_each_fence_keep_their_names():
    answer = ("**main.tf**\n```terraform\n" + TF + "```\n\n`variables.tf`:\n```terraform\n"
              'variable "region" {\n  type = string\n}\n```\n')
    assert sorted(extract(answer, "terraform").files) == ["main.tf", "variables.tf"]


def test_an_untagged_fence_is_taken_when_its_content_is_hcl_and_shell_blocks_are_ignored():
    answer = f"```bash\nterraform init\n```\n```\n{TF}```\n"
    assert extract(answer, "terraform").files == {"main.tf": TF}


def test_a_fence_cut_off_by_the_end_of_the_generation_still_counts():
    assert extract(f"```hcl\n{TF}", "terraform").files == {"main.tf": TF}


def test_an_answer_with_only_shell_commands_has_no_terraform():
    assert extract("Run this:\n```sh\nterraform apply\n```\n", "terraform") is None


def test_an_unfenced_answer_is_trimmed_of_the_prose_around_the_code():
    answer = f"Sure! Below is the configuration.\n\n{TF}\nApply it with terraform apply.\n"
    assert extract(answer, "terraform").files == {"main.tf": TF}


def test_an_unfenced_answer_is_split_where_a_line_names_a_file():
    answer = f"# main.tf\n{TF}\n# outputs.tf\noutput \"id\" {{\n  value = aws_s3_bucket.b.id\n}}\n"
    files = extract(answer, "terraform").files
    assert sorted(files) == ["main.tf", "outputs.tf"] and "output" in files["outputs.tf"]


def test_a_yaml_answer_goes_to_cloudformation_or_kubernetes_by_its_content():
    cfn = "AWSTemplateFormatVersion: '2010-09-09'\nResources:\n  B:\n    Type: AWS::S3::Bucket\n"
    k8s = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
    answer = f"```yaml\n{k8s}```\n```yaml\n{cfn}```\n"
    assert extract(answer, "cloudformation").files == {"template.yaml": cfn}
    assert extract(answer, "kubernetes").files == {"manifest.yaml": k8s}


def test_several_kubernetes_manifests_become_several_files_and_json_keeps_its_suffix():
    k8s = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n"
    answer = f"```yaml\n{k8s}```\n```json\n{{\"apiVersion\": \"v1\", \"kind\": \"Namespace\"}}\n```\n"
    assert sorted(extract(answer, "kubernetes").files) == ["manifest-2.json", "manifest.yaml"]


def test_a_helm_chart_is_assembled_from_file_names_in_info_strings_comments_and_preceding_lines():
    answer = (
        '```yaml title="mychart/Chart.yaml"\napiVersion: v2\nname: web\nversion: 0.1.0\n```\n'
        "And `values.yaml`:\n```yaml\nreplicaCount: 2\n```\n"
        "```yaml\n# templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n"
        "metadata:\n  name: {{ .Release.Name }}\n```\n")
    files = extract(answer, "helm").files
    assert sorted(files) == ["Chart.yaml", "templates/deployment.yaml", "values.yaml"]
    assert "replicaCount" in files["values.yaml"]


def test_unnamed_helm_blocks_are_named_by_their_content():
    answer = ("```yaml\napiVersion: v2\nname: web\nversion: 0.1.0\n```\n```yaml\nreplicaCount: 1\n```\n"
              "```yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n```\n"
              '```\n{{- define "web.name" -}}web{{- end -}}\n```\n')
    assert sorted(extract(answer, "helm").files) == ["Chart.yaml", "templates/_helpers.tpl",
                                                     "templates/template-3.yaml", "values.yaml"]


def test_yaml_without_chart_or_templates_is_not_a_helm_chart():
    assert extract("```yaml\nreplicaCount: 1\n```\n", "helm") is None


def test_a_pulumi_program_is_taken_from_a_python_fence():
    program = 'import pulumi\nimport pulumi_aws as aws\n\nbucket = aws.s3.BucketV2("b")\n'
    assert extract(f"```python\n{program}```\n", "pulumi").files == {"__main__.py": program}


def test_a_file_name_that_does_not_fit_the_kind_is_not_used():
    answer = f"This reads `config.json`:\n```hcl\n{TF}```\n"
    assert extract(answer, "terraform").files == {"main.tf": TF}


@pytest.mark.parametrize("alias,kind", [("TF", "terraform"), ("cfn", "cloudformation"), ("k8s", "kubernetes"),
                                        ("Helm", "helm"), ("pulumi", "pulumi")])
def test_kind_aliases_normalize_and_unknown_kinds_are_refused(alias, kind):
    assert normalize_kind(alias) == kind
    with pytest.raises(ValueError, match="expected one of"):
        normalize_kind("ansible")


def test_a_file_kind_is_guessed_from_its_name_and_content():
    assert guess_kind("main.tf", TF) == "terraform"
    assert guess_kind("t.yaml", "AWSTemplateFormatVersion: x\nResources: {}\n") == "cloudformation"
    assert guess_kind("d.yaml", "apiVersion: v1\nkind: Pod\n") == "kubernetes"
    assert guess_kind("notes.txt", "hello") is None
