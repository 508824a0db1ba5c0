"""Create, idempotently, the AWS resources the pipeline uses.

Runs against whatever `AWS_ENDPOINT_URL` points to, or real AWS when it is unset.
"""

import json
import logging

import boto3
from botocore.exceptions import ClientError

from stock_pipeline.settings import setting

log = logging.getLogger(__name__)


def ensure_stream(kinesis, name: str, shard_count: int, wait: bool) -> None:
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shard_count)
        log.info("created stream %s with %d shards", name, shard_count)
    except kinesis.exceptions.ResourceInUseException:
        log.info("stream %s exists", name)
    if wait:
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )


def ensure_bucket(s3, name: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        log.info("created bucket %s", name)
    except ClientError as err:
        if err.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        log.info("bucket %s exists", name)


def ensure_alerts(sns, sqs, topic_name: str, queue_name: str) -> tuple[str, str]:
    """The alerts topic, and an SQS queue subscribed to it so alerts can be read locally."""
    topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]  # idempotent
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]  # idempotent
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    existing = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(sub["Endpoint"] == queue_arn for sub in existing):
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        log.info("subscribed queue %s to topic %s", queue_name, topic_name)
    return topic_arn, queue_url


def provision(shard_count: int | None = None, wait: bool = True) -> None:
    session = boto3.session.Session()
    region = session.region_name or setting("AWS_DEFAULT_REGION")
    shards = shard_count or int(setting("TICKS_STREAM_SHARDS"))
    ensure_stream(
        session.client("kinesis", region_name=region), setting("TICKS_STREAM"), shards, wait
    )
    ensure_bucket(session.client("s3", region_name=region), setting("LAKE_BUCKET"), region)
    ensure_alerts(
        session.client("sns", region_name=region),
        session.client("sqs", region_name=region),
        setting("ALERTS_TOPIC"),
        setting("ALERTS_QUEUE"),
    )
