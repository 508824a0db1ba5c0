"""The marts against an independent pandas computation, through the real stream and lake."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.resources.warehouse import writer
from stock_pipeline.settings import get_settings
from tests.helpers import query_lake
from tests.transform import reference

SYMBOLS = ["AAA", "BBB", "CCC"]
# Two UTC trading days: an hour either side of midnight, ~10 ticks per symbol and minute.
START = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 19, tzinfo=UTC)
KEYS = {
    "minute_bars": ["symbol", "minute_ts"],
    "moving_averages": ["symbol", "minute_ts"],
    "daily_prices": ["symbol", "trade_date"],
    "latest_quotes": ["symbol"],
    "minute_bar_anomalies": ["anomaly_id"],
}


@pytest.fixture(scope="module")
def ticks() -> list[dict]:
    market = SyntheticMarket(SYMBOLS, seed=11, start=START, ticks_per_second=0.5)
    return list(market.ticks(until=START + timedelta(hours=2)))


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Same keys, and every value equal to 1e-9 (nulls where the other has nulls)."""
    columns = list(expected.columns)
    actual = _sorted(actual[columns], keys)
    expected = _sorted(expected, keys)
    assert len(actual) == len(expected)
    for name in columns:
        got, want = actual[name], expected[name]
        if pd.api.types.is_numeric_dtype(want) and not pd.api.types.is_bool_dtype(want):
            np.testing.assert_allclose(
                got.to_numpy(float), want.to_numpy(float), rtol=0, atol=1e-9, err_msg=name
            )
        else:
            assert got.tolist() == want.tolist(), name


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for name in frame.columns:
        if name.endswith("_ts"):
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.as_unit("us")
        elif name == "trade_date":
            frame[name] = pd.to_datetime(frame[name]).dt.as_unit("us")
    return frame.sort_values(keys, ignore_index=True)


def assert_full_refresh_gives_the_same_marts(warehouse) -> None:
    incremental = {table: warehouse.read(table) for table in KEYS}
    warehouse.build(full_refresh=True)
    for table, frame in incremental.items():
        expected = frame.drop(columns=["loaded_at", "updated_at"], errors="ignore")
        assert_same_rows(warehouse.read(table), expected, KEYS[table])


def assert_marts_match(warehouse, ticks: list[dict]) -> None:
    for table, expected in reference.marts(pd.DataFrame(ticks)).items():
        assert_same_rows(warehouse.read(table), expected, KEYS[table])


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, monkeypatch) -> str:
    """The warehouse's catalog: the embedded SQLite, or a real PostgreSQL server's database."""
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_database")
        monkeypatch.setenv("WAREHOUSE_CATALOG", f"postgres:{database}")
        get_settings.cache_clear()
    return request.param


def test_marts_match_pandas_reference(catalog, ticks, ingest_ticks, warehouse):
    """Two micro-batches through Kinesis and the lake, 3 symbols x 2 days, every value."""
    assert len({t["ts"][:10] for t in ticks}) == 2
    half = len(ticks) // 2
    ingest_ticks(ticks[:half])
    warehouse.build()
    ingest_ticks(ticks[half:])
    warehouse.build()
    assert_marts_match(warehouse, ticks)
    # The data is rich enough to exercise every window and the day-over-day return.
    averages = warehouse.read("moving_averages")
    assert averages.groupby("symbol")["sma_50"].count().min() > 50
    assert warehouse.read("daily_prices")["daily_return"].notna().sum() == len(SYMBOLS)


def test_resent_ticks_change_no_mart(ticks, ingest_ticks, warehouse):
    """A producer retry puts ticks on the stream again; every mart counts each tick once."""
    # Within one micro-batch: 100 ticks twice.
    ingest_ticks(ticks + ticks[:100])
    warehouse.build()
    assert len(warehouse.read("stg_lake__ticks")) == len(ticks)
    assert_marts_match(warehouse, ticks)

    # In a later micro-batch: ticks already in the warehouse, at both ends of the history. No
    # mart changes, down to when its rows were loaded.
    before = {table: _sorted(warehouse.read(table), keys) for table, keys in KEYS.items()}
    ingest_ticks(ticks[:50] + ticks[-50:])
    warehouse.build()
    lake_counts = query_lake("select count(*), count(distinct event_id) from ticks")
    assert lake_counts == [(len(ticks) + 200, len(ticks))]
    for table, keys in KEYS.items():
        pd.testing.assert_frame_equal(_sorted(warehouse.read(table), keys), before[table])


@pytest.mark.slow
def test_incremental_runs_with_late_ticks_equal_full_refresh(ticks, ingest_ticks, warehouse):
    frame = pd.DataFrame(ticks)
    ts = pd.to_datetime(frame["ts"], utc=True)
    # Late: a whole AAA bar in the middle of day 1 (a new bar moves every later bar's position
    # and window) and BBB's last tick of day 1 (its close, hence day 2's return).
    missing_bar = (frame["symbol"] == "AAA") & (ts.dt.floor("min") == START + timedelta(minutes=30))
    day_close = frame.index == ts[(frame["symbol"] == "BBB") & (ts < MIDNIGHT)].idxmax()
    late = (missing_bar | day_close).to_numpy()
    on_time = [tick for tick, is_late in zip(ticks, late, strict=True) if not is_late]
    late_ticks = [tick for tick, is_late in zip(ticks, late, strict=True) if is_late]
    assert missing_bar.sum() > 1

    half = len(on_time) // 2
    for batch in (on_time[:half], on_time[half:]):
        ingest_ticks(batch)
        warehouse.build()
    aaa_bars = warehouse.read("minute_bars").query("symbol == 'AAA'")
    assert START + timedelta(minutes=30) not in set(aaa_bars["minute_ts"])

    ingest_ticks(late_ticks)
    warehouse.build()
    assert_marts_match(warehouse, ticks)

    assert_full_refresh_gives_the_same_marts(warehouse)


def test_incremental_runs_read_only_the_objects_landed_since_the_last_build(
    ticks, ingest_ticks, warehouse
):
    third = len(ticks) // 3
    ingest_ticks(ticks[:third])
    warehouse.build()
    # Every object loaded so far now holds garbage: an incremental run that opened one would
    # fail. The emulator runs in this process.
    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[get_settings().lake_bucket]
    loaded = {name: key for name, key in bucket.keys.items() if name.startswith("raw/ticks/")}
    assert loaded
    for key in loaded.values():
        key.value = b"not parquet"

    # Two micro-batches land before the next build: it loads both.
    ingest_ticks(ticks[third : 2 * third])
    ingest_ticks(ticks[2 * third :])
    built = warehouse.build()
    assert_marts_match(warehouse, ticks)
    (staging,) = [
        m
        for m in built.asset_materializations_for_node("tick_models")
        if m.asset_key.path == ["stg_lake__ticks"]
    ]
    landed = {name for name in bucket.keys if name.startswith("raw/ticks/")} - set(loaded)
    assert staging.metadata["lake_objects_read"].value == len(landed)

    # Re-executing a micro-batch rewrites the same objects: the next build reads them, adds nothing.
    before = {table: _sorted(warehouse.read(table), keys) for table, keys in KEYS.items()}
    ingest_ticks.run(ingest_ticks.run_configs[-1])
    warehouse.build()
    for table, keys in KEYS.items():
        pd.testing.assert_frame_equal(_sorted(warehouse.read(table), keys), before[table])


def test_the_scheduled_checks_pass_on_the_marts_and_catch_a_broken_one(
    ticks, ingest_ticks, warehouse
):
    """tick_model_checks_job runs the dbt tests micro-batches leave out, on the whole marts."""
    from stock_pipeline.definitions import defs

    ingest_ticks(ticks[:500])
    warehouse.build()
    job = defs.resolve_job_def("tick_model_checks_job")
    passed = job.execute_in_process(instance=warehouse.instance)
    evaluations = passed.get_asset_check_evaluations()
    assert len(evaluations) == 19 and all(e.passed for e in evaluations)
    assert not passed.get_asset_materialization_events()  # checks only: no model is rebuilt

    with writer() as con:
        con.execute(
            "insert into warehouse.main.latest_quotes"
            " select * from warehouse.main.latest_quotes limit 1"
        )
    failed = job.execute_in_process(instance=warehouse.instance, raise_on_error=False)
    assert not failed.success  # an ERROR test: the run fails, and its failure alerts
    failing = {e.check_name for e in failed.get_asset_check_evaluations() if not e.passed}
    assert failing == {"unique_latest_quotes_symbol"}
