"""The reconciliation check: stream-derived daily closes against the official daily bars."""

from datetime import date

import dagster as dg
import pandas as pd
import pytest

from stock_pipeline.defs.history.checks import (
    CloseReconciliationConfig,
    daily_close_matches_official,
)
from stock_pipeline.resources.warehouse import BUILD_COMPLETE, writer

OFFICIAL = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL", "MSFT", "NVDA"],
        "trade_date": [date(2025, 12, 1), date(2025, 12, 2), date(2025, 12, 1), date(2025, 12, 1)],
        "close": [100.0, 200.0, 50.0, 10.0],
    }
)
# AAPL 12-01 is 0.1% off, AAPL 12-02 1% off, MSFT 12-01 exact; NVDA has no stream close and
# MSFT 12-02 no official one, so neither is compared.
STREAM = pd.DataFrame(
    {
        "symbol": ["AAPL", "AAPL", "MSFT", "MSFT"],
        "trade_date": [date(2025, 12, 1), date(2025, 12, 2), date(2025, 12, 1), date(2025, 12, 2)],
        "close": [100.1, 202.0, 50.0, 999.0],
    }
)


@pytest.fixture
def warehouse(aws_env) -> None:
    """Both tables, in one commit marked a complete build, as dbt's publish_build marks it."""
    with writer() as con:
        con.register("stream", STREAM)
        con.register("official", OFFICIAL)
        con.execute("begin transaction")
        con.execute("create table warehouse.daily_prices as select * from stream")
        con.execute("create table warehouse.stg_lake__daily_bars as select * from official")
        con.execute("call warehouse.set_commit_message('test', ?)", [BUILD_COMPLETE])
        con.execute("commit")


def test_disagreements_beyond_the_tolerance_warn_with_the_list(warehouse):
    result = daily_close_matches_official(CloseReconciliationConfig(relative_tolerance=0.005))

    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["compared"].value == 3
    assert result.metadata["disagreements"].value == 1
    assert result.metadata["max_relative_diff"].value == pytest.approx(0.01, abs=1e-12)
    listed = result.metadata["disagreeing_closes"].value
    assert [(row["symbol"], row["trade_date"]) for row in listed] == [("AAPL", "2025-12-02")]
    assert listed[0]["stream_close"] == 202.0 and listed[0]["official_close"] == 200.0


def test_tolerance_is_configurable(warehouse):
    assert daily_close_matches_official(CloseReconciliationConfig(relative_tolerance=0.02)).passed
    strict = daily_close_matches_official(CloseReconciliationConfig(relative_tolerance=0.0005))
    assert strict.metadata["disagreements"].value == 2


def test_before_the_models_exist_there_is_nothing_to_compare(aws_env):
    writer().close()  # an empty warehouse

    result = daily_close_matches_official(CloseReconciliationConfig())

    assert result.passed and result.metadata["compared"].value == 0
