"""Ticks into the S3 lake exactly as the lake contract lays them out (DESIGN.md, lake layout).

The transform tests control which lake files exist (late ticks, re-sent ticks, several
micro-batches), so they write `raw/ticks` objects themselves rather than through the stream.
"""

from datetime import UTC, datetime

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stock_pipeline.settings import setting
from stock_pipeline.wire import RAW_TICKS_SCHEMA

SHARD = "shardId-000000000000"


def ticks_table(ticks: list[dict], first_sequence: int, ingested_at: datetime) -> pa.Table:
    """Wire-format tick dicts as `raw/ticks` rows, numbered from `first_sequence`."""
    columns = {name: [t.get(name) for t in ticks] for name in RAW_TICKS_SCHEMA.names[:9]}
    columns["ts"] = [datetime.fromisoformat(t) for t in columns["ts"]]
    columns["shard_id"] = [SHARD] * len(ticks)
    columns["sequence_number"] = [f"{first_sequence + i:056d}" for i in range(len(ticks))]
    columns["arrival_ts"] = [ingested_at] * len(ticks)
    columns["ingested_at"] = [ingested_at] * len(ticks)
    return pa.table(columns, schema=RAW_TICKS_SCHEMA)


def write_lake_ticks(
    ticks: list[dict], first_sequence: int, ingested_at: datetime | None = None
) -> list[str]:
    """One Parquet object per event date under raw/ticks/dt=…/shard=…/<first>_<last>.parquet."""
    table = ticks_table(ticks, first_sequence, ingested_at or datetime.now(UTC))
    s3, bucket, prefix = boto3.client("s3"), setting("LAKE_BUCKET"), setting("LAKE_PREFIX")
    dates = pc.strftime(table["ts"], format="%Y-%m-%d")
    keys = []
    for date in sorted(set(dates.to_pylist())):
        rows = table.filter(pc.equal(dates, date))
        first, last = rows["sequence_number"][0].as_py(), rows["sequence_number"][-1].as_py()
        key = "/".join(
            part
            for part in (
                prefix.strip("/"),
                "raw/ticks",
                f"dt={date}",
                f"shard={SHARD}",
                f"{first}_{last}.parquet",
            )
            if part
        )
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink)
        s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
        keys.append(key)
    return keys
