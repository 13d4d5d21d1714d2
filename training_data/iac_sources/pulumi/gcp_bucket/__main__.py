import pulumi
import pulumi_gcp as gcp

bucket = gcp.storage.Bucket(
    "artifacts",
    location="EU",
    uniform_bucket_level_access=True,
    versioning=gcp.storage.BucketVersioningArgs(enabled=True),
)

pulumi.export("bucket_url", bucket.url)
