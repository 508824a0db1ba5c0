"""Ingest decode benchmark: the project's columnar path vs a naive per-record path vs pyarrow.

Builds 1,000,000 synthetic wire records in memory, then times on the same bytes, in one process:
  project  decode_records (bulk JSON parse + Arrow validation) + Parquet bytes for the lake, one
           thread per shard (2 shards) as the raw_ticks asset runs it
  naive    json.loads per record, validation in Python, pandas DataFrame, to_parquet
  limit    pyarrow.json.read_json of the records joined by newlines (parse only)
Prints records/s for each and the ratios project/naive (target >= 5) and project/limit
(target >= 0.5).  Usage: python benchmarks/ingest_decode.py [records]
"""

import io
import json
import math
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from stock_pipeline.defs.ingest.decode import WIRE_SCHEMA, decode_records
from stock_pipeline.defs.ingest.lake import ticks_parquet
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import Settings
from stock_pipeline.wire import SYMBOL_PATTERN, encode_tick

SYMBOL = re.compile(SYMBOL_PATTERN)


def project_shard(data: list[bytes], meta: pa.Table) -> int:
    ticks, _ = decode_records(data, meta)
    now = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    ticks_parquet(ticks.append_column("ingested_at", pa.repeat(now, ticks.num_rows)))
    return ticks.num_rows


def project(data: list[bytes], meta: pa.Table) -> int:
    """As raw_ticks runs it: the records of each shard (2, the default) side by side."""
    half = len(data) // 2
    shards = [(data[:half], meta.slice(0, half)), (data[half:], meta.slice(half))]
    with ThreadPoolExecutor(max_workers=len(shards)) as pool:
        return sum(pool.map(lambda shard: project_shard(*shard), shards))


def naive(data: list[bytes], meta: pa.Table) -> int:
    rows = []
    for payload in data:
        tick = json.loads(payload)
        price, bid, ask = tick["price"], tick.get("bid"), tick.get("ask")
        if not (
            SYMBOL.match(tick["symbol"])
            and math.isfinite(price)
            and price > 0
            and tick["volume"] >= 0
            and (bid is None or ask is None or bid <= ask)
        ):
            continue
        tick["ts"] = datetime.fromisoformat(tick["ts"])
        rows.append(tick)
    frame = pd.DataFrame(rows)
    frame.to_parquet(io.BytesIO(), compression="zstd")
    return len(frame)


def limit(data: list[bytes], meta: pa.Table) -> int:
    options = pj.ParseOptions(explicit_schema=WIRE_SCHEMA)
    return pj.read_json(io.BytesIO(b"\n".join(data)), parse_options=options).num_rows


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    symbols = Settings.model_fields["symbols"].default
    market = SyntheticMarket(symbols, seed=1, start=datetime(2024, 3, 5, 14, 30, tzinfo=UTC))
    data = [encode_tick(t) for t in market.ticks(count=count)]
    meta = pa.table(
        {
            "shard_id": pa.array(["shardId-000000000000"] * count),
            "sequence_number": pa.array(np.arange(count).astype(str)),
            "arrival_ts": pa.array(
                np.full(count, np.datetime64("2024-03-05T15:00:00", "ms")),
                pa.timestamp("ms", tz="UTC"),
            ),
        }
    )
    print(f"{count:,} records, {sum(map(len, data)) / 1e6:.0f} MB of JSON")
    rates = {}
    for name, path in (("project", project), ("naive", naive), ("limit", limit)):
        best = math.inf
        for _ in range(2 if name != "naive" else 1):
            started = time.perf_counter()
            rows = path(data, meta)
            best = min(best, time.perf_counter() - started)
        assert rows == count, (name, rows)
        rates[name] = count / best
        print(f"{name:8s} {best:7.2f} s  {rates[name]:>12,.0f} records/s")
    print(f"project / naive = {rates['project'] / rates['naive']:.1f}x (target >= 5)")
    print(f"project / limit = {rates['project'] / rates['limit']:.2f}x (target >= 0.5)")


if __name__ == "__main__":
    main()
