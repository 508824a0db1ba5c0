"""`stock-pipeline provision` deploys infra/stack.yaml on the emulator, as a user runs it."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber

from stock_pipeline.provision import PARAMETERS, Stack, load_template


def provision_cli(env: dict[str, str], **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stock_pipeline.cli", "provision"],
        env={**os.environ, **env, **overrides},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_provision_creates_the_stack_then_updates_it_and_prints_the_outputs(aws_env):
    first = provision_cli(aws_env)
    assert first.returncode == 0, first.stderr
    outputs = {
        k: v.strip() for k, _, v in (line.partition(" ") for line in first.stdout.splitlines())
    }
    assert outputs["StreamName"] == "stock-ticks"
    assert outputs["LakeBucketName"] == "stock-lake"
    assert outputs["AlertsTopicArn"].endswith(":stock-alerts")
    for component in ("Producer", "Pipeline", "Reader"):
        assert f":role/stock-pipeline-{component}Role-" in outputs[f"{component}RoleArn"]

    again = provision_cli(aws_env)  # an existing stack is updated, not duplicated
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    (stack,) = boto3.client("cloudformation").describe_stacks()["Stacks"]
    assert stack["StackStatus"].endswith("_COMPLETE")

    summary = boto3.client("kinesis").describe_stream_summary(StreamName="stock-ticks")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2
    glue = boto3.client("glue")
    assert {t["Name"] for t in glue.get_tables(DatabaseName="stock_lake")["TableList"]} == {
        "ticks",
        "daily_bars",
    }
    assert boto3.client("athena").get_work_group(WorkGroup="stock-pipeline")["WorkGroup"]


def test_alerts_reach_the_subscribed_queue_and_poison_ones_the_dead_letter_queue(provisioned):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.list_topics()["Topics"][0]["TopicArn"]
    sns.publish(TopicArn=topic_arn, Message='{"rule": "price_jump"}')
    queue_url = sqs.get_queue_url(QueueName=provisioned["ALERTS_QUEUE"])["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]
    assert json.loads(json.loads(message["Body"])["Message"]) == {"rule": "price_jump"}

    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f":{provisioned['ALERTS_QUEUE']}-dlq")
    policy = json.loads(attributes["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic_arn}}


def test_an_alert_email_is_subscribed_when_set(aws_env):
    result = provision_cli(aws_env, ALERT_EMAIL="oncall@example.com")
    assert result.returncode == 0, result.stderr
    sns = boto3.client("sns")
    endpoints = {s["Protocol"]: s["Endpoint"] for s in sns.list_subscriptions()["Subscriptions"]}
    assert endpoints["email"] == "oncall@example.com"


@pytest.mark.parametrize(
    ("variable", "value", "parameter"),
    [
        ("TICKS_STREAM_SHARDS", "0", "StreamShardCount"),
        ("LAKE_BUCKET", "Stock_Lake", "LakeBucketName"),
        ("LAKE_BUCKET", "192.168.10.1", "LakeBucketName"),
        ("LAKE_BUCKET", "ab", "LakeBucketName"),
        ("ALERT_EMAIL", "not-an-address", "AlertEmail"),
    ],
)
def test_an_invalid_parameter_fails_before_anything_is_created(aws_env, variable, value, parameter):
    result = provision_cli(aws_env, **{variable: value})
    assert result.returncode != 0
    assert f"invalid parameter {parameter} (from {variable}): {value!r}" in result.stderr
    assert "Traceback" not in result.stderr
    assert boto3.client("cloudformation").describe_stacks()["Stacks"] == []
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_a_deployment_the_emulator_refuses_says_why(aws_env):
    # A queue of the same name made outside the stack, with different settings.
    boto3.client("sqs").create_queue(
        QueueName=aws_env["ALERTS_QUEUE"], Attributes={"VisibilityTimeout": "99"}
    )
    result = provision_cli(aws_env)
    assert result.returncode != 0
    assert "stack stock-pipeline create failed" in result.stderr
    assert "QueueAlreadyExists" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_aws_deployment_names_each_failing_resource_first_cause_first():
    """AWS reports failures as stack events (moto records none): their reading, on AWS's own
    response shape."""
    cfn = botocore.session.get_session().create_client("cloudformation", region_name="us-east-1")
    event = {"StackId": "id", "StackName": "s", "Timestamp": datetime.now(UTC)}
    events = [  # newest first, as DescribeStackEvents returns them
        {**event, "EventId": "4", "LogicalResourceId": "s", "ResourceType":
         "AWS::CloudFormation::Stack", "ResourceStatus": "ROLLBACK_IN_PROGRESS",
         "ClientRequestToken": "t"},
        {**event, "EventId": "3", "LogicalResourceId": "AlertsTopic", "ResourceType":
         "AWS::SNS::Topic", "ResourceStatus": "CREATE_FAILED", "ClientRequestToken": "t",
         "ResourceStatusReason": "Resource creation cancelled"},
        {**event, "EventId": "2", "LogicalResourceId": "LakeBucket", "ResourceType":
         "AWS::S3::Bucket", "ResourceStatus": "CREATE_FAILED", "ClientRequestToken": "t",
         "ResourceStatusReason": "stock-lake already exists"},
        {**event, "EventId": "1", "LogicalResourceId": "Old", "ResourceType": "AWS::SQS::Queue",
         "ResourceStatus": "UPDATE_FAILED", "ClientRequestToken": "an earlier deployment"},
    ]  # fmt: skip
    with Stubber(cfn) as stub:
        stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": "s"})
        assert Stack(cfn, "s").failures("t") == [
            "LakeBucket (AWS::S3::Bucket): stock-lake already exists",
            "AlertsTopic (AWS::SNS::Topic): Resource creation cancelled",
        ]


def test_every_parameter_provision_sets_is_declared_by_the_template():
    assert set(PARAMETERS) <= set(load_template()["Parameters"])
