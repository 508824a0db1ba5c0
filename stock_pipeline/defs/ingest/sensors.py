"""`kinesis_ticks_sensor`: turns the stream into micro-batch runs with per-shard checkpoints.

The cursor holds the stream it belongs to (ARN and creation time), for each shard the last
sequence number handed to a run (and its arrival time), plus the closed shards already drained.
Each tick proposes at most one run carrying the exact range to consume on each shard; its
run_key is derived from the stream and those ranges, so the same ranges can never launch twice,
and the cursor moves only past ranges handed to that run.
"""

import hashlib
import json
import time

import dagster as dg

from stock_pipeline.defs.ingest.assets import RawTicksConfig, ShardRange, raw_ticks_job
from stock_pipeline.defs.ingest.kinesis import list_shards, scan_shard
from stock_pipeline.resources.aws import KinesisResource
from stock_pipeline.settings import get_settings

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
MAX_IN_FLIGHT = 2  # one run updating the warehouse while the next starts up and lands its batch


def _run_key(stream: dict, ranges: list[ShardRange]) -> str:
    # A re-created stream reuses shard ids and sequence numbers: its ranges need their own keys.
    canonical = json.dumps([stream, [r.model_dump() for r in ranges]], sort_keys=True)
    return "kinesis-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


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

    state = json.loads(context.cursor) if context.cursor else {"shards": {}, "drained": []}
    client = kinesis.get_client()
    summary = client.describe_stream_summary(StreamName=kinesis.stream_name)[
        "StreamDescriptionSummary"
    ]
    stream = {
        "arn": summary["StreamARN"],
        "created": summary["StreamCreationTimestamp"].timestamp(),
    }
    if state.get("stream", stream) != stream:
        context.log.error(
            f"STREAM CHANGED: {kinesis.stream_name} is not the stream this cursor was written "
            f"for (was {state['stream']}, now {stream}): it was re-created, or the emulator "
            "restarted. Reading the new stream from its oldest record (TRIM_HORIZON); records "
            "the old stream held and no run consumed are gone with it."
        )
        state = {"shards": {}, "drained": []}
    checkpoints: dict[str, dict] = state["shards"]
    shards = list_shards(client, kinesis.stream_name)
    known = {shard.shard_id for shard in shards}
    # A parent that aged out of the stream (past retention) counts as drained.
    drained = {shard_id for shard_id in state["drained"] if shard_id in known}

    retention_hours = summary["RetentionPeriodHours"]
    for shard_id, checkpoint in checkpoints.items():
        age_hours = (time.time() - checkpoint["arrival"]) / 3600
        if shard_id in known and shard_id not in drained and age_hours > retention_hours:
            context.log.error(
                f"DATA LOSS: shard {shard_id} checkpoint is {age_hours:.1f} h old, beyond the "
                f"stream's {retention_hours} h retention; records after sequence "
                f"{checkpoint['sequence']} may have been trimmed before they were consumed."
            )

    # Shard ids grow as shards are created, so parents sort before their children and a parent
    # drained in this loop frees its children in the same evaluation.
    pending = sorted(
        (shard for shard in shards if shard.shard_id not in drained), key=lambda s: s.shard_id
    )
    budget = max(1, get_settings().kinesis_max_records_per_run // max(1, len(pending)))
    ranges: list[ShardRange] = []
    records = 0
    for shard in pending:
        if not all(parent in drained or parent not in known for parent in shard.parents):
            continue  # resharding: a child waits until its parents are drained
        after = checkpoints.get(shard.shard_id, {}).get("sequence")
        try:
            scan = scan_shard(client, kinesis.stream_name, shard, after, budget)
        except client.exceptions.InvalidArgumentException as err:
            context.log.error(
                f"DATA LOSS: shard {shard.shard_id} checkpoint {after} is no longer in the "
                f"stream ({err}); resuming at the oldest record still held."
            )
            scan = scan_shard(client, kinesis.stream_name, shard, None, budget)
        if scan.count:
            records += scan.count
            ranges.append(
                ShardRange(
                    shard_id=shard.shard_id,
                    first_sequence=scan.first_sequence,
                    last_sequence=scan.last_sequence,
                )
            )
            checkpoints[shard.shard_id] = {
                "sequence": scan.last_sequence,
                "arrival": scan.last_arrival,
            }
        elif scan.drained:
            drained.add(shard.shard_id)
            context.log.info(f"shard {shard.shard_id} is closed and drained; children may start")

    cursor = json.dumps({"stream": stream, "shards": checkpoints, "drained": sorted(drained)})
    if not ranges:
        return dg.SensorResult(skip_reason="no new records on the stream", cursor=cursor)
    request = dg.RunRequest(
        run_key=_run_key(stream, ranges),
        run_config=dg.RunConfig(
            ops={
                "raw_ticks": RawTicksConfig(
                    ranges=ranges, stream_created_ms=round(stream["created"] * 1000)
                )
            }
        ),
        tags={"stock_pipeline/records": str(records)},
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
