import pulumi
import pulumi_aws as aws

table = aws.dynamodb.Table(
    "events",
    attributes=[aws.dynamodb.TableAttributeArgs(name="event_id", type="S")],
    hash_key="event_id",
    billing_mode="PAY_PER_REQUEST",
    point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
)

pulumi.export("table_name", table.name)
