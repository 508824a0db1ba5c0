"""Pipeline-health alerts: a failed run, and `latest_quotes` going stale while ticks flow.

Both publish through the same outbox and ledger as the anomaly checks, with their own `kind`.
The freshness sensor also retries every minute whatever earlier deliveries left pending.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from stock_pipeline.defs.ingest.kinesis import list_shards
from stock_pipeline.resources.alerts import Alert, AlertsResource
from stock_pipeline.resources.aws import KinesisResource
from stock_pipeline.resources.metrics import MetricsResource
from stock_pipeline.settings import get_settings

LATEST_QUOTES = dg.AssetKey("latest_quotes")
# GetRecords may return nothing while it skips ahead through a shard; give up after this many.
MAX_EMPTY_READS = 5
# The run tag Dagster's run retries set on a failed run (dagster._core.storage.tags).
WILL_RETRY_TAG = "dagster/will_retry"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def producer_live(kinesis: KinesisResource, since: datetime) -> bool:
    """Whether any shard of the stream received a record at or after `since`."""
    client = kinesis.get_client()
    for shard in list_shards(client, kinesis.stream_name):
        iterator = client.get_shard_iterator(
            StreamName=kinesis.stream_name,
            ShardId=shard.shard_id,
            ShardIteratorType="AT_TIMESTAMP",
            Timestamp=since,
        )["ShardIterator"]
        for _ in range(MAX_EMPTY_READS):
            response = client.get_records(ShardIterator=iterator, Limit=1)
            if response["Records"]:
                return True
            iterator = response.get("NextShardIterator")
            if not iterator or not response.get("MillisBehindLatest"):
                break
    return False


@dg.run_failure_sensor(name="run_failure_sensor", default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_sensor(
    context: dg.RunFailureSensorContext, alerts: AlertsResource, metrics: MetricsResource
) -> None:
    """Publish one ERROR alert per failed run that Dagster will not retry (the run id is its
    identity), and count every failed run."""
    run = context.dagster_run
    metrics.publish({"RunsFailed": 1})
    # Set by the instance as it stores the failure, when run retries will launch another run:
    # a crashed worker whose ranges are re-executed is not a failure to wake anyone for.
    stored = context.instance.get_run_by_id(run.run_id) or run
    if stored.tags.get(WILL_RETRY_TAG) == "true":
        context.log.info("run %s failed and will be retried: no alert", run.run_id)
        return
    planned = context.instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assets = sorted({r.event_log_entry.dagster_event.asset_key.to_user_string() for r in planned})
    record = context.instance.get_run_record_by_id(run.run_id)
    message = context.failure_event.message
    failed_at = datetime.fromtimestamp(record.end_time, UTC) if record and record.end_time else None
    delivery = alerts.publish(
        [
            Alert(
                alert_id=f"run_failure:{run.run_id}",
                kind="run_failure",
                rule="run_failure",
                severity="ERROR",
                asset_key=",".join(assets) or None,
                event_time=iso(failed_at or datetime.now(UTC)),
                summary=f"run {run.run_id} of {run.job_name} failed: {message}",
            )
        ],
        # This sensor sees each failed run once: without the ledger, send it anyway.
        unrecorded_fallback=True,
    )
    if delivery.error:
        outcome = "sent without the ledger" if delivery.sent else "pending"
        context.log.warning("run failure alert %s: %s", outcome, delivery.error)


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def latest_quotes_freshness_sensor(
    context: dg.SensorEvaluationContext,
    alerts: AlertsResource,
    kinesis: KinesisResource,
    metrics: MetricsResource,
) -> dg.SkipReason:
    """Alert once per breach when `latest_quotes` is older than the bound and ticks still flow.

    A breach is named by the last update it follows, so it alerts once however long it lasts.
    The age goes to CloudWatch too, except while the producer is quiet (a closed market is not
    stale), so the freshness alarm judges the same thing.
    """
    max_age = timedelta(minutes=get_settings().latest_quotes_max_age_minutes)
    now = datetime.now(UTC)
    record = context.instance.get_latest_materialization_event(LATEST_QUOTES)
    alerts_to_send = []
    if record is None:
        # Nothing to be stale yet (a fresh `make dev`); failing dbt runs alert on their own.
        verdict = "latest_quotes not materialized yet"
    elif now - (updated := datetime.fromtimestamp(record.timestamp, UTC)) <= max_age:
        verdict = f"latest_quotes updated {iso(updated)}, within {max_age}"
        metrics.publish({"LatestQuotesAgeSeconds": (now - updated).total_seconds()})
    elif not producer_live(kinesis, since=now - max_age):
        verdict = f"latest_quotes stale but no ticks arrived in the last {max_age}"
    else:
        verdict = f"latest_quotes stale: last updated {iso(updated)}"
        metrics.publish({"LatestQuotesAgeSeconds": (now - updated).total_seconds()})
        alerts_to_send.append(
            Alert(
                alert_id=f"freshness:latest_quotes:{iso(updated)}",
                kind="freshness",
                rule="freshness",
                severity="WARN",
                asset_key=LATEST_QUOTES.to_user_string(),
                event_time=iso(updated + max_age),
                value=(now - updated).total_seconds() / 60,
                threshold=max_age.total_seconds() / 60,
                summary=f"{verdict} while the producer is live",
            )
        )
    delivery = alerts.publish(alerts_to_send)
    if delivery.error:
        verdict += f"; {len(delivery.pending)} alert(s) pending: {delivery.error}"
    return dg.SkipReason(verdict)
