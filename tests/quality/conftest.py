"""Quality fixtures: minute bars built from synthetic ticks in a temporary warehouse.

The rules (the dbt models `minute_bar_rule_days` and `minute_bar_anomalies`) only read
`minute_bars`, so these tests write that one table directly from the ticks, with the marts'
pandas reference (tests/transform/reference.py), instead of running the lake and the dbt models
before it.
"""

from datetime import UTC, datetime, timedelta
from io import StringIO

import boto3
import dagster as dg
import duckdb
import pandas as pd
import pytest

from stock_pipeline.defs.transform.assets import dbt_build_step, dbt_project
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.resources.alerts import AlertsResource, follow_alerts
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.metrics import MetricsResource
from stock_pipeline.resources.warehouse import writer
from stock_pipeline.settings import get_settings
from tests.transform import reference

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
    bars = reference.minute_bars(reference.unique_ticks(ticks))
    con.execute("set timezone = 'UTC'")
    con.register("bars", bars)
    con.execute(
        """
        create or replace table minute_bars as
        select
            symbol, minute_ts, trade_date::date as trade_date,
            open, high, low, close, volume, vwap, trade_count,
            current_timestamp as loaded_at
        from bars
        """
    )
    con.unregister("bars")


# The rules' models alone, built by the pipeline's own dbt step on the bars written below.
anomaly_models = dbt_build_step("anomaly_models", "minute_bar_rule_days minute_bar_anomalies")


def minute_bars_stand_in(ticks: pd.DataFrame, *edits: tuple[str, dict]) -> dg.AssetsDefinition:
    """`minute_bars` as the dbt model would leave it, for the rules to judge; `edits`: update
    statements and their parameters, to make bars no tick could."""

    @dg.asset(name="minute_bars", pool="duckdb")
    def minute_bars() -> None:
        with writer() as con:
            con.execute("use warehouse")
            write_minute_bars(con, ticks)
            for edit in edits:
                con.execute(*edit)

    return minute_bars


def judge(
    *assets: dg.AssetsDefinition, thresholds: dict | None = None, resources: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Materialise `assets` (a `minute_bars` stand-in first) and the rules' models after them,
    from scratch, with `thresholds` as the run's config."""
    return dg.materialize(
        [*assets, anomaly_models],
        resources={"dbt": DbtCli(project_dir=dbt_project()), **(resources or {})},
        run_config={
            "ops": {
                "anomaly_models": {
                    "config": {"full_refresh": True, "anomaly_thresholds": thresholds or {}}
                }
            }
        },
        raise_on_error=False,
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
