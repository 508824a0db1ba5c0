"""Tick sources for the producer: the synthetic market, yfinance 1-minute bars, or a CSV replay.

yfinance and CSV bars become one tick per bar: the bar's close at the bar's start time, with the
bar's volume. Their event ids are derived from (source, symbol, time), so replaying the same
data re-sends the same ids and the warehouse counts each bar once.
"""

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd

from stock_pipeline import csv_files
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.wire import SCHEMA_VERSION

log = logging.getLogger(__name__)
_ID_NAMESPACE = uuid.UUID("9d0c7f9e-3f55-4c64-8a55-2f7cbe3b1f40")


def bars_to_ticks(bars: pd.DataFrame, source: str) -> list[dict]:
    """One tick per OHLCV bar (columns symbol, ts tz-aware, close, volume), in time order."""
    bars = bars.dropna(subset=["close"]).sort_values(["ts", "symbol"], kind="stable")
    ts = pd.to_datetime(bars["ts"], utc=True)
    frame = pd.DataFrame(
        {
            "symbol": bars["symbol"].str.upper().to_numpy(),
            "ts": ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00").to_numpy(),
            "price": bars["close"].astype(float).to_numpy(),
            "volume": bars["volume"].fillna(0).astype("int64").to_numpy(),
            "source": source,
            "schema_version": SCHEMA_VERSION,
        }
    )
    frame.insert(
        0,
        "event_id",
        [
            str(uuid.uuid5(_ID_NAMESPACE, f"{source}:{s}:{t}"))
            for s, t in zip(frame["symbol"], frame["ts"], strict=True)
        ],
    )
    return frame.to_dict("records")


def csv_ticks(path: str) -> list[dict]:
    """Ticks from a CSV file, in timestamp order.

    Either a tick file (ts, symbol, price, volume, optional bid, ask, event_id) or OHLCV bars
    (ts or date, symbol, open, high, low, close, volume). Times and files as `csv_files` reads
    them; an unreadable one raises `UnreadableCsvError`.
    """
    frame = csv_files.read_csv(path)
    if "ts" not in frame and "date" in frame:
        frame["ts"] = frame["date"]
    csv_files.require_columns(path, frame, "ts", "symbol", "volume")
    if not ({"price", "close"} & set(frame.columns)):
        csv_files.require_columns(path, frame, "price")
    price = "price" if "price" in frame else "close"
    bars = pd.DataFrame(
        {
            "ts": csv_files.times(path, frame, "ts"),
            "symbol": frame["symbol"],
            "close": csv_files.numbers(path, frame, price),
            "volume": csv_files.numbers(path, frame, "volume", required=price == "price"),
        }
    )
    csv_files.require_values(path, frame, "symbol")
    if price == "close":
        return bars_to_ticks(bars, "csv")
    if "bid" in frame:
        bars["bid"] = csv_files.numbers(path, frame, "bid", required=False)
    if "ask" in frame:
        bars["ask"] = csv_files.numbers(path, frame, "ask", required=False)
    if "event_id" in frame:
        bars["event_id"] = frame["event_id"]
    # bars_to_ticks orders by (ts, symbol) too, stably: its ticks line up with these rows.
    bars = bars.sort_values(["ts", "symbol"], kind="stable")
    ticks = bars_to_ticks(bars, "csv")
    for optional in ("bid", "ask", "event_id"):
        if optional in bars:
            for tick, value in zip(ticks, bars[optional], strict=True):
                if pd.notna(value):
                    tick[optional] = value if optional == "event_id" else float(value)
    return ticks


def yfinance_ticks(symbols: list[str], poll_seconds: float = 60.0) -> Iterator[dict]:
    """Yahoo Finance 1-minute bars as ticks: today's so far, then each new bar as it closes."""
    from stock_pipeline.resources.market_data import download_yfinance

    last_seen: dict[str, pd.Timestamp] = {}
    while True:
        now = datetime.now(UTC)
        bars, empty = download_yfinance(symbols, now - timedelta(days=1), now, interval="1m")
        if empty:
            log.warning("yfinance returned no 1-minute data for %s", ", ".join(empty))
        # The current minute's bar is still forming; it is sent once it has closed.
        bars = bars[bars["ts"] + pd.Timedelta(minutes=1) <= now]
        if not bars.empty:
            newest = bars.groupby("symbol")["ts"].transform("max")
            seen = bars["symbol"].map(last_seen).fillna(pd.Timestamp.min.tz_localize(UTC))
            fresh = bars[bars["ts"] > seen]
            last_seen.update(newest.groupby(bars["symbol"]).max().to_dict())
            yield from bars_to_ticks(fresh, "yfinance")
        time.sleep(poll_seconds)


def synthetic_ticks(
    symbols: list[str], rate: float, seed: int, inject: list[str]
) -> Iterator[dict]:
    """The synthetic market running in real time: event time advances at `rate` ticks/s."""
    return SyntheticMarket(symbols, seed=seed, ticks_per_second=rate, inject=inject).ticks()
