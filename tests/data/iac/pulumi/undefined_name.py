import pulumi
import pulumi_aws as aws

bucket = aws.s3.BucketV2("data")
pulumi.export("bucket_name", bucket_id)
