"""A versioned S3 bucket; its name is a stack output."""
import pulumi
import pulumi_aws as aws

bucket = aws.s3.BucketV2("data")

aws.s3.BucketVersioningV2(
    "data-versioning",
    bucket=bucket.id,
    versioning_configuration={"status": "Enabled"},
)

aws.s3.BucketPublicAccessBlock(
    "data-public-access",
    bucket=bucket.id,
    block_public_acls=True,
    block_public_policy=True,
    ignore_public_acls=True,
    restrict_public_buckets=True,
)

pulumi.export("bucket_name", bucket.id)
