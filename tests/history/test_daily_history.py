"""daily_history: dbt builds it from the lake's daily bars; every indicator matches pandas."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from dbt.cli.main import dbtRunner

from stock_pipeline.resources.warehouse import connect
from tests.history.conftest import lake_keys, materialize_days, read_bars

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
INDICATORS = [
    "daily_return",
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd_line",
    "macd_signal",
    "macd_histogram",
    "rsi_14",
    "bollinger_middle",
    "bollinger_upper",
    "bollinger_lower",
    "high_52w",
    "low_52w",
]


def dbt_build(selection: str, tmp_path: Path) -> None:
    args = ["build", "--select", selection, "--project-dir", str(DBT_PROJECT)]
    args += ["--profiles-dir", str(DBT_PROJECT), "--target-path", str(tmp_path / "target")]
    args += ["--log-path", str(tmp_path / "logs")]
    result = dbtRunner().invoke(args)
    ok = ("success", "pass")
    failed = [(r.node.name, r.message) for r in result.result or [] if r.status not in ok]
    assert result.success, result.exception or failed


def expected_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The indicators as pandas (and numpy, for the standard deviation) define them."""
    close = bars["close"]
    out = pd.DataFrame({"symbol": bars["symbol"], "trade_date": bars["date"]})
    out["daily_return"] = close / close.shift(1) - 1
    for n in (20, 50, 200):
        out[f"sma_{n}"] = close.rolling(n).mean()
    ema_12 = close.ewm(span=12, adjust=False, min_periods=12).mean()
    ema_26 = close.ewm(span=26, adjust=False, min_periods=26).mean()
    line = ema_12 - ema_26
    signal = line.ewm(span=9, adjust=False, min_periods=9).mean()
    out["ema_12"], out["ema_26"] = ema_12, ema_26
    out["macd_line"], out["macd_signal"], out["macd_histogram"] = line, signal, line - signal
    change = close.diff()
    avg_gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    avg_loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    out["rsi_14"] = (100 - 100 / (1 + avg_gain / avg_loss)).mask(avg_loss == 0, 100.0)
    windows = np.lib.stride_tricks.sliding_window_view(close.to_numpy(), 20)
    std_20 = np.concatenate([np.full(19, np.nan), windows.std(axis=1, ddof=0)])
    sma_20 = out["sma_20"]
    out["bollinger_middle"] = sma_20
    out["bollinger_upper"], out["bollinger_lower"] = sma_20 + 2 * std_20, sma_20 - 2 * std_20
    by_time = bars.set_index(pd.to_datetime(bars["date"]))
    out["high_52w"] = by_time["high"].rolling("364D").max().to_numpy()
    out["low_52w"] = by_time["low"].rolling("364D").min().to_numpy()
    return out


def test_indicators_match_pandas_over_more_than_300_days(history_env, s3, tmp_path):
    # Before any daily bars exist the models build, empty.
    dbt_build("+daily_history", tmp_path)
    with connect() as con:
        assert con.execute("select count(*) from daily_history").fetchone() == (0,)

    assert materialize_days("2024-06-03", "2025-09-30", dg.DagsterInstance.ephemeral()).success
    bucket = history_env["LAKE_BUCKET"]
    bars = pd.concat([read_bars(s3, bucket, key) for key in lake_keys(s3, bucket)])
    bars = bars.sort_values(["symbol", "date"], ignore_index=True)
    assert bars.groupby("symbol").size().min() >= 300

    dbt_build("+daily_history", tmp_path)

    with connect() as con:
        built = con.execute("select * from daily_history order by symbol, trade_date").df()
    expected = pd.concat(expected_indicators(g) for _, g in bars.groupby("symbol"))
    expected = expected.reset_index(drop=True)
    assert len(built) == len(bars)
    assert built["symbol"].tolist() == expected["symbol"].tolist()
    assert [d.date() for d in built["trade_date"]] == expected["trade_date"].tolist()
    np.testing.assert_array_equal(built["close"], bars["close"])
    for column in INDICATORS:
        actual = built[column].astype("float64").to_numpy()
        np.testing.assert_allclose(
            actual,
            expected[column].to_numpy(),
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            err_msg=column,
        )
        # Nulls only where the indicator still lacks bars: each has values to compare.
        assert np.isfinite(actual).any(), column
