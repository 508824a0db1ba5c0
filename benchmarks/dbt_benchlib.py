"""Shared by the dbt benchmarks: an emulator, a lake of synthetic ticks, timed dbt commands.

Lake data is generated with numpy and written with pyarrow straight into the lake layout of
docs/architecture.md (raw/ticks/dt=…/shard=…/<first>_<last>.parquet, RAW_TICKS_SCHEMA), in files
of at most `file_rows` ticks. Not a benchmark by itself.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# The scripts run as `python benchmarks/<name>.py`; the pandas baseline is the tests' reference
# implementation, imported from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stock_pipeline.emulator import moto_server
from stock_pipeline.settings import export_environment, get_settings
from stock_pipeline.wire import RAW_TICKS_SCHEMA

# As the code location does (stock_pipeline/definitions.py): loading the dbt assets parses the
# project when its manifest is stale, and dbt reads the warehouse from the environment.
export_environment()

from stock_pipeline.defs.transform.assets import DBT_PROJECT_DIR  # noqa: E402

SYMBOLS = [f"SYM{i:03d}" for i in range(100)]
SHARDS = ["shardId-000000000000", "shardId-000000000001"]
TICKS_PER_DAY = 500_000  # ~21 ticks/s over a 6.5 h session, 100 symbols
FILE_ROWS = 50_000
SESSION_OPEN = timedelta(hours=13, minutes=30)
SESSION_US = 390 * 60 * 1_000_000


@contextmanager
def emulator() -> Iterator[str]:
    """A moto server on a free loopback port, the pipeline's env pointing at it, a warehouse
    in a temporary directory and the lake bucket. Stopped on exit."""
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            WAREHOUSE_CATALOG=f"sqlite:{tmp}/warehouse.sqlite",
            WAREHOUSE_DATA_PATH=f"{tmp}/warehouse/",
        )
        os.environ.pop("LAKE_PREFIX", None)
        get_settings.cache_clear()  # the environment above
        export_environment()
        boto3.client("s3").create_bucket(Bucket=get_settings().lake_bucket)
        try:
            yield endpoint
        finally:
            # moto keeps its state in this process, across servers: the next emulator starts empty.
            reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            urllib.request.urlopen(reset, timeout=10)


class Lake:
    """Writes synthetic ticks, continuing one random walk per symbol across calls."""

    def __init__(self, seed: int = 7, file_rows: int = FILE_ROWS):
        self.file_rows = file_rows
        self.rng = np.random.default_rng(seed)
        self.log_price = np.log(self.rng.uniform(20.0, 500.0, len(SYMBOLS)))
        self.sequence = 0
        self.last_us = 0
        self.s3 = boto3.client("s3")

    def history(self, ticks: int) -> None:
        """`ticks` ticks at TICKS_PER_DAY, one day after another up to yesterday (UTC)."""
        day = datetime.now(UTC).date() - timedelta(days=-(-ticks // TICKS_PER_DAY))
        while ticks > 0:
            count = min(ticks, TICKS_PER_DAY)
            session_us = _us(datetime.combine(day, datetime.min.time(), UTC) + SESSION_OPEN)
            self.write(self.rng.integers(0, SESSION_US, count) + session_us)
            ticks -= count
            day += timedelta(days=1)

    def batch(self, ticks: int, seconds: float = 5.0) -> list[str]:
        """A micro-batch: `ticks` ticks in the `seconds` after the newest so far; its objects."""
        return self.write(self.last_us + 1 + self.rng.integers(0, int(seconds * 1e6), ticks))

    def write(self, ts_us: np.ndarray) -> list[str]:
        """Ticks at `ts_us` into the lake; the s3:// URLs of the objects written."""
        n = len(ts_us)
        ts_us = np.sort(ts_us)
        symbol = self.rng.integers(0, len(SYMBOLS), n)
        # Random walk per symbol: cumulative steps in time order within each symbol.
        order = np.lexsort((ts_us, symbol))
        by_symbol = symbol[order]
        starts = np.flatnonzero(np.r_[True, by_symbol[1:] != by_symbol[:-1]])
        ends = np.r_[starts[1:], n] - 1
        steps = np.cumsum(self.rng.standard_normal(n) * 0.0004)
        walk = steps - np.repeat(np.r_[0.0, steps[ends[:-1]]], np.diff(np.r_[starts, n]))
        log_price = np.empty(n)
        log_price[order] = self.log_price[by_symbol] + walk
        self.log_price[by_symbol[starts]] = log_price[order[ends]]
        price = np.round(np.exp(log_price), 2)
        half_spread = np.maximum(np.round(price * 0.0001, 2), 0.01)
        ts = pa.array(ts_us, pa.timestamp("us", tz="UTC"))
        table = pa.table(
            {
                "event_id": pa.array(np.arange(self.sequence, self.sequence + n)).cast(pa.string()),
                "symbol": pa.array(np.array(SYMBOLS)[symbol]),
                "ts": ts,
                "price": price,
                "volume": self.rng.integers(1, 50, n) * 10,
                "bid": price - half_spread,
                "ask": price + half_spread,
                "source": pa.array(["synthetic"] * n),
                "schema_version": pa.array(np.ones(n, np.int32)),
                "shard_id": pa.array(np.array(SHARDS)[symbol % len(SHARDS)]),
                "sequence_number": pa.array(
                    np.char.zfill(np.arange(self.sequence, self.sequence + n).astype(str), 56)
                ),
                "arrival_ts": pa.array((ts_us + 1_000_000) // 1000, pa.timestamp("ms", tz="UTC")),
                "ingested_at": pa.array(ts_us + 2_000_000, pa.timestamp("us", tz="UTC")),
            },
            schema=RAW_TICKS_SCHEMA,
        )
        self.sequence += n
        self.last_us = int(ts_us[-1])
        return self._put(table, ts_us, symbol % len(SHARDS))

    def _put(self, table: pa.Table, ts_us: np.ndarray, shard: np.ndarray) -> list[str]:
        urls = []
        days = ts_us // 86_400_000_000
        for day in np.unique(days):
            for s, shard_id in enumerate(SHARDS):
                rows = np.flatnonzero((days == day) & (shard == s))
                for start in range(0, len(rows), self.file_rows):
                    part = table.take(rows[start : start + self.file_rows])
                    first, last = part["sequence_number"][0], part["sequence_number"][-1]
                    dt = str(np.datetime64(int(day), "D"))
                    sink = pa.BufferOutputStream()
                    pq.write_table(part, sink, compression="zstd")
                    key = f"raw/ticks/dt={dt}/shard={shard_id}/{first}_{last}_0.parquet"
                    bucket = get_settings().lake_bucket
                    self.s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
                    urls.append(f"s3://{bucket}/{key}")
        return urls


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def dbt(*args: str, lake_objects: list[str] | None = None) -> float:
    """Seconds one dbt command takes, run as the Dagster asset runs it: a dbt subprocess, given
    the lake objects a micro-batch wrote (None: none named, the whole lake)."""
    env = dict(os.environ)
    if lake_objects is not None:
        env["LAKE_OBJECTS"] = json.dumps(lake_objects)
    started = time.perf_counter()
    done = subprocess.run(
        [Path(sys.executable).with_name("dbt"), *args],
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        env=env,
    )
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{done.stdout.decode()[-3000:]}")
    return elapsed
