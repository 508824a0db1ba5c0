"""History fixtures: the lake resource the assets get, and a materialise-a-range helper."""

import io

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from stock_pipeline.defs.history.assets import daily_bars
from stock_pipeline.resources.aws import LakeResource
from stock_pipeline.resources.market_data import MarketDataResource
from stock_pipeline.settings import get_settings

SYMBOLS = ["AAPL", "MSFT", "NVDA"]


@pytest.fixture
def history_env(provisioned, monkeypatch):
    """The emulator with its bucket, three symbols and the synthetic source."""
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("MARKET_DATA_SOURCE", "synthetic")
    get_settings.cache_clear()
    return provisioned


def resources(source: str = "synthetic") -> dict:
    return {
        "lake": LakeResource(bucket=dg.EnvVar("LAKE_BUCKET"), prefix=""),
        "market_data": MarketDataResource(source=source),
    }


def materialize_days(
    first: str, last: str, instance: dg.DagsterInstance, source: str = "synthetic"
) -> dg.ExecuteInProcessResult:
    """One run over partitions first..last, as a single-run backfill launches it."""
    return dg.materialize(
        [daily_bars],
        resources=resources(source),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )


def lake_keys(s3, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/daily_bars/")
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_bars(s3, bucket: str, key: str) -> pd.DataFrame:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pandas()
