"""The synthetic market's event time runs at the producer's rate, also while a symbol is silent."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from stock_pipeline.producer.synthetic import STALE_FOR, SyntheticMarket

START = datetime(2024, 3, 5, 14, tzinfo=UTC)
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]
RATE = 20.0  # ticks per second: the pace the producer sends them at


def test_event_time_keeps_pace_with_the_rate_while_a_symbol_is_silent():
    market = SyntheticMarket(
        SYMBOLS, seed=3, start=START, ticks_per_second=RATE, inject=["stale"],
        inject_after=timedelta(minutes=1),
    )  # fmt: skip
    quiet_from, quiet_until = START + timedelta(minutes=1), START + timedelta(minutes=1) + STALE_FOR
    count = int((quiet_until - START).total_seconds() * RATE) + 2_000
    ticks = pd.DataFrame(market.ticks(count=count))
    ts = pd.to_datetime(ticks["ts"], utc=True)

    # The n-th tick is sent n / rate seconds after the start, so its event time is that too:
    # an event time ahead of the wall clock would be quarantined as future_timestamp.
    expected = pd.Timestamp(START) + pd.to_timedelta(ticks.index / RATE, unit="s")
    assert (ts - expected).abs().max() <= pd.Timedelta(microseconds=1)

    silent = ticks[(ts >= quiet_from) & (ts < quiet_until)]
    assert "NVDA" not in set(silent["symbol"]) and len(silent) == STALE_FOR.total_seconds() * RATE
    assert set(ticks.loc[ts < quiet_from, "symbol"]) == set(SYMBOLS)
    assert "NVDA" in set(ticks.loc[ts >= quiet_until, "symbol"])
