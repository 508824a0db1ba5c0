"""The marts against an independent pandas computation, through the real stream and lake."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from stock_pipeline.producer.synthetic import SyntheticMarket
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


def assert_marts_match(warehouse, ticks: list[dict]) -> None:
    for table, expected in reference.marts(pd.DataFrame(ticks)).items():
        assert_same_rows(warehouse.read(table), expected, KEYS[table])


def test_marts_match_pandas_reference(ticks, ingest, warehouse):
    """Two micro-batches through Kinesis and the lake, 3 symbols x 2 days, every value."""
    assert len({t["ts"][:10] for t in ticks}) == 2
    half = len(ticks) // 2
    ingest(ticks[:half])
    warehouse.build()
    ingest(ticks[half:])
    warehouse.build()
    assert_marts_match(warehouse, ticks)
    # The data is rich enough to exercise every window and the day-over-day return.
    averages = warehouse.read("moving_averages")
    assert averages.groupby("symbol")["sma_50"].count().min() > 50
    assert warehouse.read("daily_prices")["daily_return"].notna().sum() == len(SYMBOLS)
