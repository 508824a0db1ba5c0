"""Transient faults from a proxy in front of the emulator: S3 5xx and SlowDown, Kinesis
throttling. Producer, sensor and raw_ticks retry; every tick lands once."""

import io
from collections import Counter
from datetime import UTC, datetime

import boto3
import pyarrow.parquet as pq
import pytest

from stock_pipeline import fault_proxy
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from tests.helpers import StreamIngest


@pytest.fixture
def faulty(provisioned, moto_endpoint, monkeypatch):
    proxy = fault_proxy.start(moto_endpoint, s3_error_rate=0.2, kinesis_throttle_rate=0.2, seed=7)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    get_settings.cache_clear()
    yield proxy
    proxy.shutdown()


def test_runs_retry_through_faults_and_lose_or_double_nothing(faulty, moto_endpoint):
    ticks = list(
        SyntheticMarket(["AAPL", "MSFT", "NVDA"], start=datetime(2024, 3, 5, 15, tzinfo=UTC)).ticks(
            count=3000
        )
    )
    ingest = StreamIngest()
    for start in range(0, len(ticks), 500):
        ingest(ticks[start : start + 500])

    assert faulty.counts.s3_faults > 0 and faulty.counts.kinesis_throttles > 0
    # Read the lake from the emulator itself, past the proxy.
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = get_settings().lake_bucket
    records = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="raw/ticks/")["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        table = pq.read_table(io.BytesIO(body), columns=["event_id", "shard_id", "sequence_number"])
        records += table.to_pylist()
    by_record = Counter((r["shard_id"], r["sequence_number"]) for r in records)
    assert max(by_record.values()) == 1  # each Kinesis record once in the lake
    # A producer retry after a lost answer may put a tick twice (same event_id): never less.
    assert set(r["event_id"] for r in records) == {t["event_id"] for t in ticks}
