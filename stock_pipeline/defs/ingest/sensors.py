"""`kinesis_ticks_sensor`: turns the stream into micro-batch runs with per-shard checkpoints.

Each tick proposes at most one run carrying the exact range to consume on each shard
(`planner.plan` decides them and the cursor); its run_key is derived from the stream and those
ranges, so the same ranges can never launch twice, and the cursor moves only past ranges handed
to that run.
"""

import time

import dagster as dg

from stock_pipeline.defs.ingest.assets import RawTicksConfig
from stock_pipeline.defs.ingest.jobs import raw_ticks_job
from stock_pipeline.defs.ingest.kinesis import ScanResult, Shard, list_shards, scan_shard
from stock_pipeline.defs.ingest.planner import CheckpointGoneError, Cursor, Stream, plan
from stock_pipeline.resources.aws import KinesisResource
from stock_pipeline.settings import get_settings

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
SCAN_SECONDS = 20.0  # scans page no further after this long in one evaluation
MAX_IN_FLIGHT = 2  # one run updating the warehouse while the next starts up and lands its batch


@dg.sensor(
    job=raw_ticks_job,
    minimum_interval_seconds=get_settings().kinesis_sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads every shard of the ticks stream after its checkpoint (parents before "
    "children after resharding) and launches raw_ticks_job for the new ranges.",
)
def kinesis_ticks_sensor(
    context: dg.SensorEvaluationContext, kinesis: KinesisResource
) -> dg.SensorResult:
    # Back-pressure: while two batches are in flight the next one grows instead of queueing
    # behind them, so a slow moment never builds a backlog of small runs.
    in_flight = context.instance.get_runs_count(
        dg.RunsFilter(job_name=raw_ticks_job.name, statuses=IN_FLIGHT)
    )
    if in_flight >= MAX_IN_FLIGHT:
        return dg.SensorResult(skip_reason=f"{in_flight} raw_ticks_job runs already in flight")

    client = kinesis.get_client()
    summary = client.describe_stream_summary(StreamName=kinesis.stream_name)[
        "StreamDescriptionSummary"
    ]
    stream = Stream.from_summary(summary)

    # A slow stream (a loaded host, throttled reads) shrinks the batch instead of running the
    # evaluation into Dagster's sensor timeout (60 s), which would throw its scans away.
    deadline = time.monotonic() + SCAN_SECONDS

    def scan(shard: Shard, after: str | None, limit: int) -> ScanResult:
        try:
            return scan_shard(client, kinesis.stream_name, shard, after, limit, deadline)
        except client.exceptions.InvalidArgumentException as err:
            raise CheckpointGoneError(err) from err

    batch = plan(
        Cursor.loads(context.cursor),
        stream,
        list_shards(client, kinesis.stream_name),
        scan,
        max_records=get_settings().kinesis_max_records_per_run,
        now=time.time(),
        stream_name=kinesis.stream_name,
    )
    for level, message in batch.logs:
        context.log.log(level, message)
    cursor = batch.cursor.dumps()
    if batch.skip_reason:
        return dg.SensorResult(skip_reason=batch.skip_reason, cursor=cursor)
    request = dg.RunRequest(
        run_key=batch.run_key,
        run_config=dg.RunConfig(
            ops={
                "raw_ticks": RawTicksConfig(
                    ranges=batch.ranges, stream_created_ms=round(stream.created * 1000)
                )
            }
        ),
        tags={"stock_pipeline/records": str(batch.records)},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
