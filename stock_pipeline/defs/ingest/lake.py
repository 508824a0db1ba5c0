"""Writing ticks and quarantined records to the S3 lake (docs/architecture.md, "Lake layout").

Object keys depend only on the Kinesis range they hold, so writing a range again overwrites the
same objects: a retried or re-run range never adds a file.
"""

import base64
import gzip
import io
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stock_pipeline.resources.aws import LakeResource
from stock_pipeline.wire import RAW_TICKS_SCHEMA


@dataclass
class WriteResult:
    keys: list[str] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)
    rows: int = 0
    bytes: int = 0

    def add(self, other: "WriteResult") -> None:
        self.keys += other.keys
        self.partitions |= other.partitions
        self.rows += other.rows
        self.bytes += other.bytes


def _by_date(table: pa.Table, ts_column: str):
    """(YYYY-MM-DD, rows of that UTC date), for each date present."""
    dates = pc.strftime(table.column(ts_column), format="%Y-%m-%d")
    for date in sorted(pc.unique(dates).to_pylist()):
        yield date, table.filter(pc.equal(dates, date))


def ticks_parquet(ticks: pa.Table) -> bytes:
    """Ticks as a Parquet file in the lake's raw/ticks schema."""
    buffer = io.BytesIO()
    table = ticks.select(RAW_TICKS_SCHEMA.names).cast(RAW_TICKS_SCHEMA)
    # zstd level 1: as fast to write as snappy here, and about half the bytes.
    pq.write_table(table, buffer, compression="zstd", compression_level=1)
    return buffer.getvalue()


def _write_by_date(lake, s3, table, ts_column, folder, shard_id, name, encode) -> WriteResult:
    """One object per date of `ts_column`: <folder>/dt=<date>/shard=<shard>/<name>."""
    result = WriteResult()
    for date, rows in _by_date(table, ts_column):
        body = encode(rows)
        key = lake.key(folder, f"dt={date}", f"shard={shard_id}", name)
        s3.put_object(Bucket=lake.bucket, Key=key, Body=body)
        result.keys.append(key)
        result.partitions.add(date)
        result.rows += rows.num_rows
        result.bytes += len(body)
    return result


def range_name(first: str, last: str, stream_created_ms: int) -> str:
    """<first>_<last>_<stream creation ms>: the one name of a shard range of one stream."""
    return f"{first}_{last}_{stream_created_ms}"


def write_ticks(
    lake: LakeResource, s3, ticks: pa.Table, shard_id: str, first: str, last: str, stream_ms: int
) -> WriteResult:
    """raw/ticks/dt=<event date>/shard=<shard>/<range name>.parquet, one per event date."""
    name = f"{range_name(first, last, stream_ms)}.parquet"
    return _write_by_date(lake, s3, ticks, "ts", "raw/ticks", shard_id, name, ticks_parquet)


def _quarantine_line(record: dict) -> str:
    payload = record.pop("data")
    try:
        record["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_base64"] = base64.b64encode(payload).decode("ascii")
    record["arrival_ts"] = record["arrival_ts"].isoformat()
    return json.dumps(record, ensure_ascii=False)


def _quarantine_jsonl_gz(records: pa.Table) -> bytes:
    lines = "\n".join(_quarantine_line(r) for r in records.to_pylist()) + "\n"
    return gzip.compress(lines.encode("utf-8"), mtime=0)  # mtime=0: same records, same bytes


def write_quarantine(
    lake: LakeResource, s3, records: pa.Table, shard_id: str, first: str, last: str, stream_ms: int
) -> WriteResult:
    """quarantine/ticks/dt=<arrival date>/shard=<shard>/<range name>.jsonl.gz.

    Bad records may have no readable event time, so they are filed by arrival date.
    """
    name = f"{range_name(first, last, stream_ms)}.jsonl.gz"
    return _write_by_date(
        lake, s3, records, "arrival_ts", "quarantine/ticks", shard_id, name, _quarantine_jsonl_gz
    )
