"""Quality fixtures: minute bars built from synthetic ticks in a temporary DuckDB warehouse.

The rules only read `minute_bars`, so these tests build that one table directly from the ticks
(the same OHLCV definition as the mart) instead of running the lake and dbt.
"""

from datetime import UTC, datetime, timedelta
from io import StringIO

import boto3
import duckdb
import pandas as pd
import pytest

from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.resources.alerts import AlertsResource, follow_alerts
from stock_pipeline.resources.metrics import MetricsResource
from stock_pipeline.settings import get_settings

SESSION_OPEN = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def session_ticks(
    symbols: list[str],
    minutes: int,
    ticks_per_second: float,
    inject: tuple[str, ...] = (),
    start: datetime = SESSION_OPEN,
    seed: int = 7,
) -> pd.DataFrame:
    market = SyntheticMarket(
        symbols, seed=seed, start=start, ticks_per_second=ticks_per_second, inject=inject
    )
    ticks = pd.DataFrame(market.ticks(until=start + timedelta(minutes=minutes)))
    ticks["ts"] = pd.to_datetime(ticks["ts"], utc=True)
    return ticks


def write_minute_bars(con: duckdb.DuckDBPyConnection, ticks: pd.DataFrame) -> None:
    """Replace `minute_bars` in `con`'s default schema with the OHLCV bars of `ticks`."""
    con.execute("set timezone = 'UTC'")
    con.register("ticks", ticks)
    con.execute(
        """
        create or replace table minute_bars as
        select
            symbol,
            date_trunc('minute', ts) as minute_ts,
            arg_min(price, ts) as open,
            max(price) as high,
            min(price) as low,
            arg_max(price, ts) as close,
            sum(volume) as volume,
            sum(price * volume) / sum(volume) as vwap,
            count(*) as trade_count
        from ticks
        group by symbol, date_trunc('minute', ts)
        """
    )


def read_bars(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    bars = con.execute("select * from minute_bars").df()
    bars["minute_ts"] = pd.to_datetime(bars["minute_ts"], utc=True)
    return bars


def received_alerts() -> list[str]:
    """Drain the local SQS queue subscribed to the topic: the alerts' JSON, one per message."""
    out = StringIO()
    follow_alerts(
        get_settings().alerts_queue, as_json=True, out=out, max_messages=1000, wait_seconds=0
    )
    return out.getvalue().splitlines()


@pytest.fixture
def alerts_resource(provisioned) -> AlertsResource:
    return AlertsResource(
        topic_name=get_settings().alerts_topic,
        ledger_bucket=get_settings().lake_bucket,
        ledger_prefix=get_settings().lake_prefix,
    )


@pytest.fixture
def metrics(provisioned) -> MetricsResource:
    return MetricsResource(namespace=get_settings().metrics_namespace)


@pytest.fixture
def ledger(provisioned):
    """Alert ids in each ledger state, read straight from S3."""
    s3 = boto3.client("s3")

    def ids(state: str) -> set[str]:
        prefix = f"alerts/{state}/"
        listing = s3.list_objects_v2(Bucket=get_settings().lake_bucket, Prefix=prefix)
        return {obj["Key"][len(prefix) : -len(".json")] for obj in listing.get("Contents", [])}

    return ids
