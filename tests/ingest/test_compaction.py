"""raw_ticks_compaction: closed days' micro-batch files become one file per shard-day."""

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import pyarrow.parquet as pq

from stock_pipeline.defs.ingest import compaction
from stock_pipeline.defs.ingest.compaction import raw_ticks_compaction
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings


def lake_files() -> dict[str, int]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=get_settings().lake_bucket, Prefix="raw/ticks/")
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def lake_records() -> Counter:
    s3, bucket = boto3.client("s3"), get_settings().lake_bucket
    rows: Counter = Counter()
    for key in lake_files():
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        rows.update(tuple(sorted(row.items())) for row in table.to_pylist())
    return rows


def compact(ingest_ticks) -> dict:
    result = dg.materialize(
        [raw_ticks_compaction], resources=ingest_ticks.resources, instance=ingest_ticks.instance
    )
    return {k: v.value for k, v in result.asset_materializations_for_node(
        "raw_ticks_compaction")[0].metadata.items()}  # fmt: skip


def test_closed_days_compact_to_one_file_per_shard_day_keeping_every_record_once(
    ingest_ticks, monkeypatch
):
    monkeypatch.setattr(compaction, "SETTLE", timedelta(0))
    symbols = ["AAPL", "MSFT", "NVDA", "KO"]
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Two closed days (from 15:00 the day before yesterday), and today up to now: each of six
    # micro-batches holds ticks of all three days, so each day gets several files per shard.
    closed_market = SyntheticMarket(
        symbols, start=midnight - timedelta(days=2, hours=-15), ticks_per_second=0.02
    )
    closed_ticks = list(closed_market.ticks(until=midnight))
    elapsed = max((now - midnight).total_seconds() - 1, 1)
    today_market = SyntheticMarket(symbols, start=midnight, ticks_per_second=120 / elapsed)
    today_ticks = list(today_market.ticks(until=now - timedelta(seconds=1)))
    for batch in range(6):
        ingest_ticks(closed_ticks[batch::6] + today_ticks[batch::6])
    files_before, records_before = lake_files(), lake_records()
    today = f"/dt={datetime.now(UTC).date().isoformat()}/"
    closed = {k: size for k, size in files_before.items() if today not in k}
    still_open = {k: size for k, size in files_before.items() if today in k}
    folders = {key.rsplit("/", 1)[0] for key in closed}
    assert len(folders) == 4 and len(closed) > 2 * len(folders) and len(still_open) > 2

    metadata = compact(ingest_ticks)

    files_after = lake_files()
    compacted = {k: size for k, size in files_after.items() if today not in k}
    assert sorted(key.rsplit("/", 1)[0] for key in compacted) == sorted(folders)  # one each
    assert {k: s for k, s in files_after.items() if today in k} == still_open  # today: as it was
    assert lake_records() == records_before  # every record, once, every column as it was
    assert metadata["files_before"] == len(closed)
    assert metadata["bytes_before"] == sum(closed.values())
    assert metadata["files_after"] == len(compacted)
    assert metadata["bytes_after"] == sum(compacted.values())
    assert len(metadata["days_compacted"]) == 2

    # A crash between the write and the deletes leaves an original beside the merged file: the
    # next run merges them again and still keeps each record once.
    s3, bucket = boto3.client("s3"), get_settings().lake_bucket
    original = next(iter(closed))
    merged = next(k for k in compacted if k.startswith(original.rsplit("/", 1)[0]))
    s3.put_object(
        Bucket=bucket, Key=original, Body=s3.get_object(Bucket=bucket, Key=merged)["Body"].read()
    )
    assert compact(ingest_ticks)["files_before"] == 2
    assert lake_records() == records_before
    assert len(lake_files()) == len(folders) + len(still_open)

    # Nothing left to do: a third run changes nothing.
    assert compact(ingest_ticks)["files_before"] == 0
