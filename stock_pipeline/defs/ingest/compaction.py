"""`raw_ticks_compaction`: each closed day's micro-batch files rewritten as one file per shard-day.

`raw_ticks` writes a file per shard per micro-batch, tens of thousands a day, and a full refresh
pays for every one it opens. Once a day is closed, its files in each shard folder are merged
into one file (several of about TARGET_FILE_BYTES for a big day). The merged file is written
before the originals are deleted, so a reader sees every tick at every moment, some twice while
both exist (staging de-duplicates by event_id). A Kinesis record is kept once: rows are unique
by (shard_id, sequence_number, event_id), which also makes a re-run after a crash between the
write and the deletes come out the same.
"""

import hashlib
import io
import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stock_pipeline.defs.ingest.lake import ticks_parquet
from stock_pipeline.resources.aws import LakeResource

TARGET_FILE_BYTES = 128 * 1024 * 1024
COMPACTED_PREFIX = "compacted_"
# Objects this recent are left alone: an incremental build may still be about to read them.
SETTLE = timedelta(hours=1)
RECORD_KEY = ["shard_id", "sequence_number", "event_id"]


def _folders(lake: LakeResource, s3, before: datetime) -> dict[str, list[dict]]:
    """Shard folders of closed days (dt earlier than `before`'s date) and their objects."""
    folders: dict[str, list[dict]] = defaultdict(list)
    prefix = lake.key("raw/ticks") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            folder, _, name = obj["Key"].rpartition("/")
            day = folder[len(prefix) :].split("/", 1)[0].removeprefix("dt=")
            if name.endswith(".parquet") and day < before.date().isoformat():
                folders[folder].append(obj)
    return folders


def compact_folder(lake: LakeResource, s3, folder: str, objects: list[dict]) -> list[str]:
    """Merge `objects` (one shard-day) into compacted files, then delete them; the new keys."""
    tables = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=lake.bucket, Key=o["Key"])["Body"].read()))
        for o in objects
    ]
    merged = pa.concat_tables(tables, promote_options="default")
    # One row per Kinesis record, whatever earlier compactions or re-runs left behind.
    first_rows = (
        merged.append_column("row", pa.array(np.arange(merged.num_rows), pa.int64()))
        .group_by(RECORD_KEY, use_threads=False)
        .aggregate([("row", "min")])
        .column("row_min")
    )
    deduplicated = merged.take(first_rows).sort_by("ts")
    parts = max(1, math.ceil(sum(o["Size"] for o in objects) / TARGET_FILE_BYTES))
    tag = hashlib.sha256("\n".join(sorted(o["Key"] for o in objects)).encode()).hexdigest()[:16]
    rows_per_part = math.ceil(deduplicated.num_rows / parts)
    written = []
    for part in range(parts):
        rows = deduplicated.slice(part * rows_per_part, rows_per_part)
        key = f"{folder}/{COMPACTED_PREFIX}{tag}_{part}.parquet"
        s3.put_object(Bucket=lake.bucket, Key=key, Body=ticks_parquet(rows))
        written.append(key)
    doomed = [o["Key"] for o in objects if o["Key"] not in written]
    for start in range(0, len(doomed), 1000):  # DeleteObjects takes 1,000 keys a call
        batch = doomed[start : start + 1000]
        s3.delete_objects(
            Bucket=lake.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
    return written


@dg.asset(
    group_name="ingest",
    kinds={"s3", "parquet"},
    description="Rewrites each closed day's raw/ticks micro-batch files into one file per "
    "shard-day (several of about 128 MB for a big day); metadata: files and bytes before and "
    "after.",
)
def raw_ticks_compaction(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    started = time.monotonic()
    s3 = lake.get_client()
    now = datetime.now(UTC)
    before = {"files": 0, "bytes": 0}
    after = {"files": 0, "bytes": 0}
    days: set[str] = set()
    for folder, objects in sorted(_folders(lake, s3, now).items()):
        settled = [o for o in objects if o["LastModified"] < now - SETTLE]
        if len(settled) < 2:
            continue  # one file per shard-day already, or nothing settled yet
        written = compact_folder(lake, s3, folder, settled)
        heads = [s3.head_object(Bucket=lake.bucket, Key=key) for key in written]
        before["files"] += len(settled)
        before["bytes"] += sum(o["Size"] for o in settled)
        after["files"] += len(written)
        after["bytes"] += sum(h["ContentLength"] for h in heads)
        days.add(folder.rsplit("/", 2)[-2].removeprefix("dt="))
        context.log.info(f"{folder}: {len(settled)} files -> {len(written)}")
    return dg.MaterializeResult(
        metadata={
            "days_compacted": dg.MetadataValue.json(sorted(days)),
            "files_before": before["files"],
            "files_after": after["files"],
            "bytes_before": before["bytes"],
            "bytes_after": after["bytes"],
            "seconds": round(time.monotonic() - started, 3),
        }
    )


raw_ticks_compaction_job = dg.define_asset_job(
    "raw_ticks_compaction_job", selection=[raw_ticks_compaction]
)

raw_ticks_compaction_schedule = dg.ScheduleDefinition(
    job=raw_ticks_compaction_job,
    # An hour and a half into the UTC day: the day before is closed and its files settled.
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
