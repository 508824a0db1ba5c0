"""Least privilege, proven from the code's own calls.

An end-to-end run on the emulator records every AWS operation each component makes
(tests/infra/aws_calls.py: botocore hooks, and a proxy for DuckDB's S3 requests). Then, against
the policies the deployed stack holds (IAM on the emulator, as CloudFormation created them):
every call is allowed by its component's policy, every grant is used by some call, no policy
has a `*` action, and no resource lies outside the stack.
"""

import json
from fnmatch import fnmatchcase

import boto3
import dagster as dg
import pytest
import requests

from stock_pipeline.defs.history.assets import daily_bars
from stock_pipeline.defs.quality.checks import minute_bars_anomaly_checks
from stock_pipeline.defs.quality.health import latest_quotes_freshness_sensor, run_failure_sensor
from stock_pipeline.defs.transform.assets import daily_bar_models, dbt_project, tick_models
from stock_pipeline.defs.transform.maintenance import warehouse_maintenance_job
from stock_pipeline.exclusions import exclude
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.resources.alerts import AlertsResource
from stock_pipeline.resources.aws import KinesisResource, LakeResource
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.market_data import MarketDataResource
from stock_pipeline.resources.metrics import MetricsResource
from stock_pipeline.settings import get_settings
from tests.helpers import StreamIngest
from tests.infra.aws_calls import ACCOUNT, REGION, Call, list_call, record, s3_object
from tests.quality.conftest import session_ticks
from tests.serve.conftest import serving

COMPONENTS = ("producer", "pipeline", "reader")
# Actions that support no resource-level permissions: `*` is their only resource form.
NO_RESOURCE_ACTIONS = {"sns:ListTopics", "cloudwatch:PutMetricData"}
KMS_FOR_PUBLISH = ("kms:GenerateDataKey", "kms:Decrypt")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def conditions_hold(condition: dict, context: dict[str, str]) -> bool:
    for operator, keys in condition.items():
        match = {
            "StringEquals": lambda value, pattern: value == pattern,
            "StringLike": fnmatchcase,
        }[operator]
        for key, patterns in keys.items():
            if key not in context:
                return False
            if not any(match(context[key], p) for p in as_list(patterns)):
                return False
    return True


def allows(statement: dict, call: Call) -> bool:
    return (
        statement["Effect"] == "Allow"
        and any(fnmatchcase(call.action.lower(), a.lower()) for a in as_list(statement["Action"]))
        and any(fnmatchcase(call.resource, r) for r in as_list(statement["Resource"]))
        and conditions_hold(statement.get("Condition", {}), dict(call.context))
    )


def single_grants(statement: dict) -> list[dict]:
    """The statement split into one action, one resource, one value per condition key each."""
    grants = [{"Effect": "Allow", "Action": a, "Resource": r} for a in as_list(statement["Action"])
              for r in as_list(statement["Resource"])]  # fmt: skip
    for operator, keys in statement.get("Condition", {}).items():
        for key, values in keys.items():
            grants = [{**g, "Condition": {**g.get("Condition", {}), operator: {key: v}}}
                      for g in grants for v in as_list(values)]  # fmt: skip
    return grants


@pytest.fixture
def stack(provisioned):
    """The deployed stack: each component's policy document, and the ARNs the stack owns."""
    cfn, iam = boto3.client("cloudformation"), boto3.client("iam")
    (described,) = cfn.describe_stacks(StackName=get_settings().stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    policies = {}
    for component in COMPONENTS:
        policy = iam.get_policy(PolicyArn=outputs[f"{component.title()}PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]["Document"]
        policies[component] = json.loads(version) if isinstance(version, str) else version
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=get_settings().stack_name)["StackResources"]
        if "LogicalResourceId" in r
    }
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{resources['AlertsKey']}"
    owned = [outputs["StreamArn"], outputs["AlertsTopicArn"], key_arn]
    owned.append(f"arn:aws:s3:::{outputs['LakeBucketName']}")
    return {"policies": policies, "owned": owned, "outputs": outputs, "key_arn": key_arn}


def implied(calls: set[Call], stack: dict) -> set[Call]:
    """What AWS checks on the caller's behalf: publishing to the KMS-encrypted topic needs the
    key's GenerateDataKey and Decrypt, through SNS (SNS's encryption-at-rest documentation)."""
    extra = set()
    for call in calls:
        if call.action == "sns:Publish" and call.resource == stack["outputs"]["AlertsTopicArn"]:
            via = (("kms:ViaService", f"sns.{REGION}.amazonaws.com"),)
            extra |= {Call(a, stack["key_arn"], via) for a in KMS_FOR_PUBLISH}
    return calls | extra


@dg.asset
def broken_asset() -> None:
    raise RuntimeError("upstream exploded")


def land_and_build(instance: dg.DagsterInstance) -> None:
    """A micro-batch as the deployment runs it: the sensor, raw_ticks, then dbt with the
    anomaly checks and their alerts."""
    assert StreamIngest().drain() > 0  # the sensor, and raw_ticks with its metrics
    built = dg.materialize(
        [tick_models, daily_bar_models, minute_bars_anomaly_checks],
        resources={"dbt": DbtCli(project_dir=dbt_project()), "alerts": alerts_resource()},
        instance=instance,
    )
    assert built.success


def alerts_resource() -> AlertsResource:
    return AlertsResource(
        topic_name=get_settings().alerts_topic,
        ledger_bucket=get_settings().lake_bucket,
        ledger_prefix=get_settings().lake_prefix,
    )


def load_daily_bars(instance: dg.DagsterInstance) -> None:
    lake = LakeResource(bucket=get_settings().lake_bucket, prefix=get_settings().lake_prefix)
    days = dg.materialize(
        [daily_bars],
        resources={"lake": lake, "market_data": MarketDataResource(source="synthetic")},
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2026-11-16",
            "dagster/asset_partition_range_end": "2026-11-20",
        },
    )
    assert days.success


def maintain_and_watch(instance: dg.DagsterInstance) -> None:
    """The rest of what the deployment does: warehouse maintenance, the freshness and
    run-failure sensors."""
    maintained = warehouse_maintenance_job.execute_in_process(
        run_config={"ops": {"checkpoint_warehouse": {"config": {"retention_hours": 0}}}},
        instance=instance,
    )
    assert maintained.success
    metrics = MetricsResource(namespace=get_settings().metrics_namespace)
    kinesis = KinesisResource(stream_name=get_settings().ticks_stream)
    resources = {"alerts": alerts_resource(), "kinesis": kinesis, "metrics": metrics}
    latest_quotes_freshness_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    failed = dg.materialize([broken_asset], instance=instance, raise_on_error=False)
    (failure,) = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    run_failure_sensor(
        dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(failed.run_id),
            resources={"alerts": alerts_resource(), "metrics": metrics},
        ).for_run_failure()
    )


# What the dashboard asks for, and where each answer keeps its data.
DASHBOARD_READS = {
    "/v1/symbols": "symbols",
    "/v1/quotes/latest": "quotes",
    "/v1/bars/AAPL?timeframe=1Min": "bars",
    "/v1/bars/AAPL?timeframe=1Day": "bars",
    "/v1/alerts": "alerts",
    "/v1/health": "marts",
}


def read_as_the_api_does() -> None:
    """The reader's calls: `stock-pipeline serve` in a process of its own, as a user runs it
    (its AWS calls reach the emulator through the recording proxy), asked what the dashboard
    asks."""
    with serving() as url:
        for path, field in DASHBOARD_READS.items():
            response = requests.get(url + path, timeout=120)
            assert response.status_code == 200, f"{path}: {response.text}"
            assert response.json()[field], f"{path}: no {field}"
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and "plotly" in page.text


def ledger_sent(s3=None) -> list[str]:
    """The keys of the alert ledger's sent/ records."""
    prefix = "/".join(p for p in (get_settings().lake_prefix.strip("/"), "alerts/sent/") if p)
    listing = (s3 or boto3.client("s3")).list_objects_v2(
        Bucket=get_settings().lake_bucket, Prefix=prefix
    )
    return [obj["Key"] for obj in listing.get("Contents", [])]


def test_each_component_is_allowed_exactly_what_it_calls(stack, moto_endpoint):
    ticks = session_ticks(
        get_settings().symbols[:4], 20, 2.0, inject=("price_jump", "volume_spike")
    )
    wire = ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).to_dict("records")
    # Not a component: a bad record for the pipeline to quarantine, put before recording.
    boto3.client("kinesis").put_record(
        StreamName=get_settings().ticks_stream, Data=b"not json", PartitionKey="AAPL"
    )

    first, second = wire[: len(wire) // 2], wire[len(wire) // 2 :]
    with record(moto_endpoint) as recorder, dg.DagsterInstance.ephemeral() as instance:
        for batch in (first, second):  # two batches: maintenance then has files to merge
            with recorder.stage("producer"):
                KinesisProducer(boto3.client("kinesis"), get_settings().ticks_stream).put_ticks(
                    batch
                )
            with recorder.stage("pipeline"):
                if batch is first:
                    load_daily_bars(instance)
                land_and_build(instance)
                if batch is first:  # an operator leaves a tick out; the next build applies it
                    exclude([batch[0]["event_id"]], reason="bad print")
        with recorder.stage("pipeline"):
            maintain_and_watch(instance)
        with recorder.stage("reader"):
            read_as_the_api_does()
    assert ledger_sent(), "the checks sent alerts"
    # The server's own calls, seen by the proxy (botocore's hooks see only this process): the
    # ledger listed and read, and the warehouse's data files read by DuckDB.
    reader, lake = recorder.calls["reader"], get_settings().lake_bucket
    assert list_call(lake, f"{get_settings().lake_prefix}alerts/sent/") in reader
    for folder in ("alerts/sent/", "warehouse/"):
        objects = s3_object(lake, f"{get_settings().lake_prefix}{folder}")
        assert any(c.action == "s3:GetObject" and c.resource.startswith(objects) for c in reader)

    for component in COMPONENTS:
        assert recorder.unhooked(component) == set(), f"{component}: calls nobody recorded"
        calls = implied(recorder.calls[component], stack)
        assert calls, f"{component} made no AWS call"
        statements = stack["policies"][component]["Statement"]
        denied = sorted(
            (c.action, c.resource) for c in calls if not any(allows(s, c) for s in statements)
        )
        assert denied == [], f"{component}'s policy denies calls its code makes"
        unused = [
            grant
            for statement in statements
            for grant in single_grants(statement)
            if not any(allows(grant, c) for c in calls)
        ]
        assert unused == [], f"{component}'s policy grants what its code never calls"


def test_no_policy_has_a_wildcard_action_or_a_resource_outside_the_stack(stack):
    for component, policy in stack["policies"].items():
        for statement in policy["Statement"]:
            actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
            assert statement["Effect"] == "Allow"
            assert not [a for a in actions if "*" in a], f"{component}: wildcard action"
            for resource in resources:
                if resource == "*":
                    assert set(actions) <= NO_RESOURCE_ACTIONS, f"{component}: {actions} on *"
                    continue
                assert any(
                    resource == arn or resource.startswith(arn + "/") for arn in stack["owned"]
                ), f"{component}: {resource} is not a resource of the stack"
