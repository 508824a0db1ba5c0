"""`raw_ticks`: one micro-batch of the stream, re-read by exact shard ranges, into the lake."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa

from stock_pipeline.defs.ingest.decode import decode_records
from stock_pipeline.defs.ingest.kinesis import RangeUnavailableError, read_range
from stock_pipeline.defs.ingest.lake import WriteResult, write_quarantine, write_ticks
from stock_pipeline.resources.aws import KinesisResource, LakeResource
from stock_pipeline.resources.metrics import MetricsResource
from stock_pipeline.wire import TICK_OBJECTS


class ShardRange(dg.Config):
    shard_id: str
    first_sequence: str
    last_sequence: str


class RawTicksConfig(dg.Config):
    """The exact records this run consumes: for each shard, a sequence range (inclusive)."""

    ranges: list[ShardRange]
    # The stream's creation time: a re-created stream (or a restarted emulator) numbers its
    # records from the start again, so object keys carry it to stay apart from the old ones.
    stream_created_ms: int


def _records_table(records: list[dict], shard_id: str) -> tuple[list[bytes], pa.Table]:
    meta = pa.table(
        {
            "shard_id": pa.array([shard_id] * len(records), pa.string()),
            "sequence_number": pa.array([r["SequenceNumber"] for r in records], pa.string()),
            "arrival_ts": pa.array(
                [r["ApproximateArrivalTimestamp"] for r in records], pa.timestamp("ms", tz="UTC")
            ),
        }
    )
    return [r["Data"] for r in records], meta


@dg.asset(
    group_name="ingest",
    kinds={"kinesis", "s3", "parquet"},
    description="Ticks from the Kinesis stream, validated, in the S3 lake under raw/ticks "
    "(Hive-partitioned by event date and shard); bad records under quarantine/ticks.",
    # Throttling and 5xx are retried inside boto3 first; this covers what outlasts that.
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
)
def raw_ticks(
    context: dg.AssetExecutionContext,
    config: RawTicksConfig,
    kinesis: KinesisResource,
    lake: LakeResource,
    metrics: MetricsResource,
) -> dg.MaterializeResult:
    started = time.monotonic()
    kinesis_client, s3 = kinesis.get_client(), lake.get_client()
    ingested_at = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))

    def consume(shard_range: ShardRange) -> tuple[int, int, WriteResult, WriteResult]:
        args = (shard_range.shard_id, shard_range.first_sequence, shard_range.last_sequence)
        try:
            records, millis_behind = read_range(kinesis_client, kinesis.stream_name, *args)
        except RangeUnavailableError as err:
            raise dg.Failure(str(err), allow_retries=False) from err
        ticks, bad = decode_records(*_records_table(records, shard_range.shard_id))
        ticks = ticks.append_column("ingested_at", pa.repeat(ingested_at, ticks.num_rows))
        if bad.num_rows:
            reasons = ", ".join(sorted(set(bad.column("reason").to_pylist())))
            context.log.warning(
                f"shard {shard_range.shard_id}: {bad.num_rows} records quarantined ({reasons})"
            )
        key_args = (*args, config.stream_created_ms)
        written = write_ticks(lake, s3, ticks, *key_args)
        return len(records), millis_behind, written, write_quarantine(lake, s3, bad, *key_args)

    # Shards are independent: read, decode and write them side by side (boto3 clients are
    # thread-safe, and Arrow and Parquet release the GIL).
    with ThreadPoolExecutor(max_workers=min(len(config.ranges), 4) or 1) as pool:
        outcomes = list(pool.map(consume, config.ranges))

    written, quarantined = WriteResult(), WriteResult()
    for _, _, ticks_written, bad_written in outcomes:
        written.add(ticks_written)
        quarantined.add(bad_written)
    records_read = sum(outcome[0] for outcome in outcomes)
    millis_behind = max((outcome[1] for outcome in outcomes), default=0)
    return dg.MaterializeResult(
        metadata={
            "records_read": records_read,
            "records_written": written.rows,
            "records_quarantined": quarantined.rows,
            "partitions": dg.MetadataValue.json(sorted(written.partitions)),
            "partition_count": len(written.partitions),
            TICK_OBJECTS: dg.MetadataValue.json([lake.url(key) for key in written.keys]),
            "quarantine_objects": dg.MetadataValue.json([lake.url(k) for k in quarantined.keys]),
            "bytes_written": written.bytes + quarantined.bytes,
            "millis_behind_latest": millis_behind,
            "seconds": round(time.monotonic() - started, 3),
            "shard_ranges": dg.MetadataValue.json([r.model_dump() for r in config.ranges]),
            "metrics_published": metrics.publish(
                {
                    "RecordsRead": records_read,
                    "RecordsWritten": written.rows,
                    "RecordsQuarantined": quarantined.rows,
                    "MillisBehindLatest": millis_behind,
                }
            ),
        }
    )
