"""The daily_bars asset through Dagster: a month's backfill in one run, re-runs, the schedule."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest

from stock_pipeline.defs.history import assets
from stock_pipeline.defs.history.assets import daily_bars, daily_bars_schedule, trading_days
from stock_pipeline.resources.market_data import DAILY_BARS_COLUMNS, MarketDataResource
from stock_pipeline.settings import get_settings
from tests.history.conftest import SYMBOLS, lake_keys, materialize_days, read_bars

# 30 days around Thanksgiving (Thursday 2025-11-27, an NYSE holiday).
FIRST, LAST = "2025-11-17", "2025-12-16"
WEEKDAYS = [d.date().isoformat() for d in pd.bdate_range(FIRST, LAST)]


def key(day: str) -> str:
    return f"raw/daily_bars/dt={day}/daily_bars.parquet"


def test_backfill_of_a_month_writes_each_trading_day_once(history_env, s3, monkeypatch):
    bucket = history_env["LAKE_BUCKET"]
    instance = dg.DagsterInstance.ephemeral()
    s3.put_object(Bucket=bucket, Key=key("2025-12-17"), Body=b"outside the range")

    result = materialize_days(FIRST, LAST, instance)

    assert result.success
    # One run for the whole range (single-run backfill policy), one partition per weekday.
    assert len(instance.get_runs()) == 1
    materialized = instance.get_materialized_partitions(daily_bars.key)
    assert sorted(materialized) == WEEKDAYS
    assert lake_keys(s3, bucket) == sorted([key(d) for d in WEEKDAYS] + [key("2025-12-17")])

    expected, _ = MarketDataResource(source="synthetic").daily_bars(
        SYMBOLS, date.fromisoformat(FIRST), date.fromisoformat(LAST)
    )
    for day in WEEKDAYS:
        written = read_bars(s3, bucket, key(day))
        assert list(written.columns) == DAILY_BARS_COLUMNS
        if day == "2025-11-27":
            assert written.empty  # the holiday is an empty partition, not an error
            continue
        want = expected[expected["date"] == date.fromisoformat(day)].reset_index(drop=True)
        pd.testing.assert_frame_equal(written, want, check_dtype=False)
    metadata = result.asset_materializations_for_node("daily_bars")[0].metadata
    assert metadata["rows"].value == 21 * len(SYMBOLS)
    assert metadata["holidays"].value == ["2025-11-27"]
    assert metadata["empty_symbols"].value == []

    # Re-materialising one partition replaces its file exactly, here with fewer symbols.
    monkeypatch.setenv("SYMBOLS", "MSFT")
    get_settings.cache_clear()
    before = read_bars(s3, bucket, key("2025-12-01"))
    assert materialize_days("2025-12-02", "2025-12-02", instance).success
    rerun = read_bars(s3, bucket, key("2025-12-02"))
    want = expected[
        (expected["date"] == date(2025, 12, 2)) & (expected["symbol"] == "MSFT")
    ].reset_index(drop=True)
    pd.testing.assert_frame_equal(rerun, want, check_dtype=False)
    pd.testing.assert_frame_equal(read_bars(s3, bucket, key("2025-12-01")), before)
    assert len(lake_keys(s3, bucket)) == len(WEEKDAYS) + 1


def test_symbols_without_bars_are_reported_not_written(history_env, s3, tmp_path):
    vendor = tmp_path / "bars.csv"
    vendor.write_text("date,symbol,open,high,low,close,volume\n2025-12-01,AAPL,10,12,9,11,100\n")

    result = materialize_days(
        "2025-12-01", "2025-12-02", dg.DagsterInstance.ephemeral(), source=f"csv:{vendor}"
    )

    metadata = result.asset_materializations_for_node("daily_bars")[0].metadata
    assert metadata["empty_symbols"].value == ["MSFT", "NVDA"]
    assert metadata["sessions_without_bars"].value == ["2025-12-02"]
    bucket = history_env["LAKE_BUCKET"]
    assert read_bars(s3, bucket, key("2025-12-01"))["symbol"].tolist() == ["AAPL"]
    assert read_bars(s3, bucket, key("2025-12-02")).empty


def test_a_session_not_closed_yet_stays_empty_until_a_later_run(history_env, s3, monkeypatch):
    class Clock(datetime):
        now_utc = datetime(2025, 11, 28, 17, 59, tzinfo=ZoneInfo("UTC"))

        @classmethod
        def now(cls, tz=None):
            return cls.now_utc

    monkeypatch.setattr(assets, "datetime", Clock)
    bucket, instance = history_env["LAKE_BUCKET"], dg.DagsterInstance.ephemeral()

    # The day after Thanksgiving closes early, at 13:00 New York (18:00 UTC).
    result = materialize_days("2025-11-26", "2025-11-28", instance)

    metadata = result.asset_materializations_for_node("daily_bars")[0].metadata
    assert metadata["sessions_not_closed"].value == ["2025-11-28"]
    assert metadata["holidays"].value == ["2025-11-27"]
    assert len(read_bars(s3, bucket, key("2025-11-26"))) == len(SYMBOLS)
    assert read_bars(s3, bucket, key("2025-11-28")).empty

    Clock.now_utc = datetime(2025, 11, 28, 18, 0, tzinfo=ZoneInfo("UTC"))
    assert materialize_days("2025-11-28", "2025-11-28", instance).success
    assert len(read_bars(s3, bucket, key("2025-11-28"))) == len(SYMBOLS)


def test_schedule_asks_for_the_day_that_just_closed_in_new_york():
    evening = datetime(2025, 12, 2, 18, 30, tzinfo=ZoneInfo("America/New_York"))
    context = dg.build_schedule_context(scheduled_execution_time=evening)

    request = daily_bars_schedule(context)

    assert request.partition_key == "2025-12-02"
    assert daily_bars_schedule.job_name == "daily_bars_job"
    assert daily_bars_schedule.execution_timezone == "America/New_York"
    # The key exists at that moment: today's partition is open before midnight (end_offset=1).
    keys = trading_days.get_partition_keys(current_time=evening)
    assert keys[-1] == "2025-12-02" and "2025-11-29" not in keys


def test_partitions_start_at_the_history_start_date():
    assert trading_days.get_first_partition_key() == "2000-01-03"


def test_an_unreadable_vendor_file_fails_the_run_with_one_line(history_env, tmp_path):
    vendor = tmp_path / "bars.csv"
    vendor.write_text("date,symbol,open,high,low,close,volume\n2025-12-01,AAPL,10,12,9,11,1e\n")

    with pytest.raises(dg.Failure) as raised:
        materialize_days(
            "2025-12-01", "2025-12-01", dg.DagsterInstance.ephemeral(), source=f"csv:{vendor}"
        )
    assert raised.value.description == f"{vendor}: line 2, column volume: '1e' is not a number"
    assert not raised.value.allow_retries  # a retry cannot fix the file
