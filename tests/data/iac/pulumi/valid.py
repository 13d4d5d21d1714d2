"""A private, versioned S3 bucket and its name as a stack output."""
import pulumi
import pulumi_aws as aws

config = pulumi.Config()
prefix = config.get("prefix") or "orch-example"

bucket = aws.s3.BucketV2("data", bucket_prefix=prefix)
aws.s3.BucketVersioningV2(
    "data-versioning",
    bucket=bucket.id,
    versioning_configuration={"status": "Enabled"},
)

pulumi.export("bucket_name", bucket.id)
