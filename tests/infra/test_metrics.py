"""CloudWatch metrics: each micro-batch publishes its counts and lag; an outage never fails it."""

from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg

from stock_pipeline.defs.quality.health import latest_quotes_freshness_sensor
from stock_pipeline.provision import load_template
from stock_pipeline.resources.alerts import AlertsResource
from stock_pipeline.resources.aws import KinesisResource
from stock_pipeline.resources.metrics import METRICS, MetricsResource
from stock_pipeline.settings import get_settings
from tests.helpers import StreamIngest
from tests.quality.conftest import session_ticks
from tests.quality.test_alerts import dead_endpoint


def published(name: str) -> list[dict]:
    """Every datapoint of metric `name` in the pipeline's namespace, oldest first."""
    now = datetime.now(UTC)
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace=get_settings().metrics_namespace,
        MetricName=name,
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=60,
        Statistics=["Sum", "Maximum", "SampleCount"],
    )["Datapoints"]
    return sorted(points, key=lambda p: p["Timestamp"])


def wire(count: int) -> list[dict]:
    ticks = session_ticks(["AAPL", "MSFT"], 10, 2.0)
    return ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).head(count).to_dict("records")


def test_each_micro_batch_publishes_records_read_written_quarantined_and_lag(ingest_ticks):
    ingest_ticks.put_raw([(b"not json", "AAPL"), (b'{"symbol": "MSFT"}', "MSFT")])
    ingest_ticks(wire(300))

    def total(name: str) -> float:
        return sum(p["Sum"] for p in published(name))

    assert total("RecordsRead") == 302
    assert total("RecordsWritten") == 300
    assert total("RecordsQuarantined") == 2
    samples = sum(p["SampleCount"] for p in published("MillisBehindLatest"))
    assert samples == len(ingest_ticks.run_configs)  # one lag figure per micro-batch
    listed = boto3.client("cloudwatch").list_metrics(Namespace=get_settings().metrics_namespace)
    names = {m["MetricName"] for m in listed["Metrics"]}
    assert names == {"RecordsRead", "RecordsWritten", "RecordsQuarantined", "MillisBehindLatest"}


def test_a_cloudwatch_outage_is_logged_and_never_fails_the_batch(provisioned, s3, caplog):
    ingest = StreamIngest()
    ingest.resources["metrics"] = MetricsResource(
        namespace=get_settings().metrics_namespace, endpoint_url=dead_endpoint()
    )
    ingest(wire(50))  # StreamIngest.run asserts each run succeeded

    (config,) = ingest.run_configs
    result = ingest.run(config)  # the same range again, to read its metadata
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.materialization.metadata
    assert metadata["metrics_published"].value is False
    assert metadata["records_written"].value == 50
    assert "not published to CloudWatch" in caplog.text
    listing = s3.list_objects_v2(Bucket=get_settings().lake_bucket, Prefix="raw/ticks/")
    assert listing["KeyCount"] > 0  # the ticks landed all the same


def test_freshness_sensor_publishes_the_age_of_latest_quotes(provisioned):
    resources = {
        "alerts": AlertsResource(
            topic_name=get_settings().alerts_topic, ledger_bucket=get_settings().lake_bucket
        ),
        "kinesis": KinesisResource(stream_name=get_settings().ticks_stream),
        "metrics": MetricsResource(namespace=get_settings().metrics_namespace),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("latest_quotes"))
        latest_quotes_freshness_sensor(
            dg.build_sensor_context(instance=instance, resources=resources)
        )
    (point,) = published("LatestQuotesAgeSeconds")
    assert 0 <= point["Maximum"] < 60


def test_the_alarms_read_exactly_the_metrics_published(provisioned):
    template = load_template()
    alarms = {
        k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {r["Properties"]["MetricName"] for r in alarms.values()} <= set(METRICS)
    assert all(r["Properties"]["Namespace"] == {"Ref": "MetricsNamespace"} for r in alarms.values())

    topic_arn = boto3.client("sns").list_topics()["Topics"][0]["TopicArn"]
    deployed = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert sorted(a["MetricName"] for a in deployed) == ["LatestQuotesAgeSeconds", "RunsFailed"]
    for alarm in deployed:
        assert alarm["Namespace"] == get_settings().metrics_namespace
        assert alarm["AlarmActions"] == [topic_arn]
    freshness = next(a for a in deployed if a["MetricName"] == "LatestQuotesAgeSeconds")
    assert freshness["Threshold"] == float(get_settings().latest_quotes_max_age_minutes) * 60
