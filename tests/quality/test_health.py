"""Pipeline-health alerts: failed runs and a stale `latest_quotes` while ticks keep arriving."""

import json
import time

import boto3
import dagster as dg
import pytest

from stock_pipeline.defs.quality.health import (
    latest_quotes_freshness_sensor,
    run_failure_sensor,
)
from stock_pipeline.resources.alerts import AlertsResource
from stock_pipeline.resources.aws import KinesisResource
from stock_pipeline.settings import get_settings
from tests.quality.conftest import received_alerts


@dg.asset
def broken_asset() -> None:
    raise RuntimeError("upstream exploded")


def test_a_failed_run_alerts_once_even_across_an_sns_outage(alerts_resource, ledger, metrics):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [broken_asset], selection=[broken_asset], instance=instance, raise_on_error=False
        )
        assert not result.success
        (failure,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)

        def evaluate() -> None:
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_sensor",
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(result.run_id),
                resources={"alerts": alerts_resource, "metrics": metrics},
            ).for_run_failure()
            run_failure_sensor(context)

        sns = boto3.client("sns")
        topic_arn = alerts_resource.topic_arn(sns)
        (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        sns.delete_topic(TopicArn=topic_arn)
        evaluate()  # SNS down: the alert waits in the outbox
        assert ledger("pending") == {f"run_failure:{result.run_id}"}
        # SNS is back: the same topic, and the stack's queue subscribed to it again.
        sns.create_topic(Name=alerts_resource.topic_name)
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=subscription["Endpoint"])
        evaluate()  # the sensor seeing the same run again
        evaluate()

    (alert,) = [json.loads(m) for m in received_alerts()]
    assert alert["kind"] == "run_failure" and alert["severity"] == "ERROR"
    assert alert["asset_key"] == "broken_asset"
    assert result.run_id in alert["summary"]
    assert ledger("pending") == set()


def test_a_failed_run_alerts_even_with_the_ledger_unreachable(provisioned, ledger, metrics):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [broken_asset], selection=[broken_asset], instance=instance, raise_on_error=False
        )
        (failure,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
            resources={
                "alerts": AlertsResource(
                    topic_name=get_settings().alerts_topic, ledger_bucket="gone"
                ),
                "metrics": metrics,
            },
        ).for_run_failure()
        run_failure_sensor(context)

    (alert,) = [json.loads(m) for m in received_alerts()]
    assert alert["alert_id"] == f"run_failure:{result.run_id}"
    assert ledger("sent") == set()  # nothing recorded: the ledger was not there


def test_a_failed_run_that_dagster_will_retry_sends_no_alert(alerts_resource, ledger, metrics):
    retries = {"run_retries": {"enabled": True, "max_retries": 1}}
    with dg.DagsterInstance.ephemeral(settings=retries) as instance:
        result = dg.materialize(
            [broken_asset], selection=[broken_asset], instance=instance, raise_on_error=False
        )
        run = instance.get_run_by_id(result.run_id)
        assert run.tags["dagster/will_retry"] == "true"  # as the instance marks it
        (failure,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_event=failure.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
            resources={"alerts": alerts_resource, "metrics": metrics},
        ).for_run_failure()
        run_failure_sensor(context)

    assert received_alerts() == []
    assert ledger("pending") == set() and ledger("sent") == set()


@pytest.fixture
def freshness(provisioned, alerts_resource, metrics, monkeypatch):
    """Evaluate the freshness sensor against an instance, with a bound of one second."""
    monkeypatch.setenv("LATEST_QUOTES_MAX_AGE_MINUTES", str(1 / 60))
    get_settings.cache_clear()
    resources = {
        "alerts": alerts_resource,
        "kinesis": KinesisResource(stream_name=get_settings().ticks_stream),
        "metrics": metrics,
    }
    with dg.DagsterInstance.ephemeral() as instance:

        def evaluate() -> str:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            return latest_quotes_freshness_sensor(context).skip_message

        yield instance, evaluate


def put_tick(kinesis) -> None:
    kinesis.put_record(StreamName=get_settings().ticks_stream, Data=b"{}", PartitionKey="AAPL")


def test_freshness_breach_alerts_once_only_while_the_producer_is_live(freshness, kinesis):
    instance, evaluate = freshness
    put_tick(kinesis)
    assert "not materialized yet" in evaluate()
    instance.report_runless_asset_event(dg.AssetMaterialization("latest_quotes"))
    put_tick(kinesis)
    assert "within" in evaluate()  # fresh
    time.sleep(1.5)
    assert "no ticks arrived" in evaluate()  # stale, but the producer is quiet too
    assert received_alerts() == []

    put_tick(kinesis)
    assert "stale" in evaluate()
    put_tick(kinesis)
    evaluate()  # the same breach: no second alert
    (alert,) = [json.loads(m) for m in received_alerts()]
    assert alert["kind"] == "freshness" and alert["asset_key"] == "latest_quotes"
    assert alert["value"] > alert["threshold"] == pytest.approx(1 / 60)

    instance.report_runless_asset_event(dg.AssetMaterialization("latest_quotes"))
    time.sleep(1.5)
    put_tick(kinesis)
    evaluate()  # a new breach after a new update: a new alert
    assert len(received_alerts()) == 1
