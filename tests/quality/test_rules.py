"""The anomaly rules (the dbt model) against an independent pandas computation on the same bars."""

from datetime import timedelta
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd

from stock_pipeline.defs.quality.checks import read_anomalies
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings
from tests.quality.conftest import (
    SESSION_OPEN,
    judge,
    minute_bars_stand_in,
    read_bars,
    session_ticks,
)

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL"]
THRESHOLDS = (
    "window_bars",
    "min_history",
    "price_jump_z",
    "volume_spike_ratio",
    "stale_minutes",
    "plausible_price_ratio",
)


def reference_anomalies(bars: pd.DataFrame, rules: SimpleNamespace) -> pd.DataFrame:
    """The rules as written in the docs, in plain pandas (rows, not SQL windows)."""
    bars = bars.sort_values(["symbol", "minute_ts"], ignore_index=True)
    bars["trade_date"] = bars["minute_ts"].dt.date
    day = bars.groupby(["symbol", "trade_date"], sort=False)
    minutes = day["minute_ts"].diff().dt.total_seconds() / 60
    bars["ret"] = (bars["close"] / day["close"].shift() - 1) / np.sqrt(minutes)
    bars["ret_sq"] = bars["ret"] ** 2

    def recent(column: str, stat: str) -> pd.Series:
        earlier = day[column].shift()
        windows = earlier.groupby([bars["symbol"], bars["trade_date"]]).rolling(
            rules.window_bars, min_periods=1
        )
        return getattr(windows, stat)().reset_index(level=[0, 1], drop=True)

    z = bars["ret"] / np.sqrt(recent("ret_sq", "mean"))
    ratio = bars["volume"] / recent("volume", "median")
    z_history = recent("ret", "count").fillna(0)
    volume_history = recent("volume", "count").fillna(0)
    rows = []
    for rule, value, flag, threshold in (
        (
            "price_jump",
            z,
            (z_history >= rules.min_history) & (z.abs() > rules.price_jump_z),
            rules.price_jump_z,
        ),
        (
            "volume_spike",
            ratio,
            (volume_history >= rules.min_history) & (ratio > rules.volume_spike_ratio),
            rules.volume_spike_ratio,
        ),
    ):
        flag = flag.fillna(False)
        starts = flag & ~flag.groupby([bars["symbol"], bars["trade_date"]]).shift(fill_value=False)
        rows += [
            (rule, bars.at[i, "symbol"], bars.at[i, "minute_ts"], value[i], threshold)
            for i in bars.index[starts]
        ]

    for _, day_bars in bars.groupby("trade_date"):
        present = day_bars.pivot_table(
            index="minute_ts", columns="symbol", values="close", aggfunc="count"
        ).notna()
        for symbol in present.columns:
            stretch = present[symbol].cumsum()
            for _, minutes_quiet in (
                present.index[~present[symbol]].to_series().groupby(stretch[~present[symbol]])
            ):
                if len(minutes_quiet) >= rules.stale_minutes:
                    rows.append(
                        (
                            "stale_feed",
                            symbol,
                            minutes_quiet.iloc[0],
                            len(minutes_quiet),
                            rules.stale_minutes,
                        )
                    )

    median_close = day["close"].transform("median")
    upper = median_close * rules.plausible_price_ratio
    lower = median_close / rules.plausible_price_ratio
    for i in bars.index:
        b = bars.loc[i]
        if b.high < b.low:
            rows.append(("high_below_low", b.symbol, b.minute_ts, b.high - b.low, 0))
        if b.volume < 0:
            rows.append(("negative_volume", b.symbol, b.minute_ts, b.volume, 0))
        if b.low <= 0:
            rows.append(("implausible_price", b.symbol, b.minute_ts, b.low, 0))
        elif b.low < lower[i]:
            rows.append(("implausible_price", b.symbol, b.minute_ts, b.low, lower[i]))
        elif b.high > upper[i]:
            rows.append(("implausible_price", b.symbol, b.minute_ts, b.high, upper[i]))
    found = pd.DataFrame(rows, columns=["rule", "symbol", "minute_ts", "value", "threshold"])
    return found.astype({"value": "float64", "threshold": "float64"})


def compare(*stand_in: dg.AssetsDefinition, **thresholds: float) -> pd.DataFrame:
    """Build the rules' models on the bars `stand_in` writes, with `thresholds` as the run's
    config, and compare what they find with the pandas rules at the thresholds in force."""
    assert judge(*stand_in, thresholds=thresholds).success
    rules = SimpleNamespace(
        **{name: getattr(get_settings(), f"anomaly_{name}") for name in THRESHOLDS} | thresholds
    )
    found = read_anomalies()
    with connect(latest=True) as con:
        expected = reference_anomalies(read_bars(con), rules)
    key = ["rule", "symbol", "minute_ts"]
    merged = found.merge(expected, on=key, how="outer", suffixes=("", "_ref"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    np.testing.assert_allclose(merged["value"], merged["value_ref"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged["threshold"], merged["threshold_ref"], rtol=1e-9)
    return found


def test_rules_match_pandas_on_two_sparse_sessions(provisioned):
    """Low thresholds on a thin two-day market: many anomalies of every soft kind to compare."""
    ticks = pd.concat(
        [
            session_ticks(SYMBOLS, 60, 1.0, inject=("price_jump", "volume_spike", "stale")),
            session_ticks(SYMBOLS, 60, 0.5, start=SESSION_OPEN + timedelta(days=1), seed=8),
        ]
    )
    # A few impossible bars as well.
    impossible = (
        (
            "update minute_bars set high = low - 0.5 where symbol = $s and minute_ts = $t",
            {"s": "AMZN", "t": SESSION_OPEN + timedelta(minutes=20)},
        ),
        (
            "update minute_bars set volume = -1 where symbol = $s and minute_ts = $t",
            {"s": "GOOGL", "t": SESSION_OPEN + timedelta(minutes=21)},
        ),
        (
            "update minute_bars set high = high * 3 where symbol = $s and minute_ts = $t",
            {"s": "AAPL", "t": SESSION_OPEN + timedelta(days=1, minutes=30)},
        ),
    )
    rules = {"price_jump_z": 2.5, "volume_spike_ratio": 1.8, "stale_minutes": 2}
    found = compare(minute_bars_stand_in(ticks, *impossible), **rules)
    counts = found["rule"].value_counts()
    assert counts["price_jump"] >= 5 and counts["volume_spike"] >= 5 and counts["stale_feed"] >= 1
    assert {"high_below_low", "negative_volume", "implausible_price"} <= set(counts.index)
    # Scoring again finds the very same anomalies.
    again = compare(minute_bars_stand_in(ticks, *impossible), **rules)
    assert again["anomaly_id"].tolist() == found["anomaly_id"].tolist()
    assert found["anomaly_id"].is_unique


def test_each_injected_fault_is_found_once_with_default_thresholds(provisioned):
    ticks = session_ticks(SYMBOLS, 40, 2.0, inject=("price_jump", "volume_spike", "stale"))
    found = compare(minute_bars_stand_in(ticks))
    injected_at = SESSION_OPEN + timedelta(minutes=10)
    assert found[["rule", "symbol", "minute_ts"]].values.tolist() == [
        ["price_jump", "AAPL", injected_at],
        ["stale_feed", "NVDA", injected_at],
        ["volume_spike", "MSFT", injected_at],
    ]
    stale = found.set_index("rule").loc["stale_feed"]
    assert stale["value"] == 15  # the whole quiet stretch, as one anomaly
    assert (
        found.set_index("rule").loc["price_jump", "anomaly_id"]
        == "price_jump:AAPL:2026-11-20T14:40Z"
    )


def test_a_spike_straddling_two_minutes_is_one_anomaly(provisioned):
    ticks = session_ticks(
        SYMBOLS, 30, 2.0, inject=("volume_spike",), start=SESSION_OPEN + timedelta(seconds=30)
    )
    found = compare(minute_bars_stand_in(ticks))
    spiking = SESSION_OPEN + timedelta(minutes=10)  # the spike covers 14:40:30-14:41:30
    assert found[["rule", "symbol", "minute_ts"]].values.tolist() == [
        ["volume_spike", "MSFT", spiking]
    ]


def test_thresholds_default_to_their_environment_variables(provisioned, monkeypatch):
    """Automatic runs take no run config: the deployment sets thresholds in the environment,
    which dbt reads."""
    monkeypatch.setenv("ANOMALY_PRICE_JUMP_Z", "4.5")
    monkeypatch.setenv("ANOMALY_STALE_MINUTES", "3")
    get_settings.cache_clear()
    ticks = session_ticks(SYMBOLS, 40, 2.0, inject=("price_jump", "volume_spike", "stale"), seed=3)
    found = compare(minute_bars_stand_in(ticks))  # the reference reads the same settings
    assert set(found.loc[found["rule"] == "price_jump", "threshold"]) == {4.5}
    assert set(found.loc[found["rule"] == "stale_feed", "threshold"]) == {3.0}
