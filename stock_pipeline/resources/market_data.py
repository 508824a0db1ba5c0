"""Official daily bars from the source `MARKET_DATA_SOURCE` names: synthetic | yfinance | csv:PATH.

Every source returns the same long frame (`DAILY_BARS_COLUMNS`, one row per symbol and NYSE
trading date) and never invents a bar: a symbol without data is left out and reported.
`download_yfinance` is the one place that talks to yfinance; the tick producer reuses it.
"""

import time
import zlib
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path

import dagster as dg
import exchange_calendars
import numpy as np
import pandas as pd
import pyarrow as pa

from stock_pipeline import csv_files
from stock_pipeline.settings import SettingsError, get_settings

EXCHANGE = "XNYS"
EXCHANGE_TZ = "America/New_York"

# The lake's raw/daily_bars columns (docs/architecture.md, "Lake layout"). adj_close is null when
# the source has no adjusted close (synthetic, csv files without one).
DAILY_BARS_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("adj_close", pa.float64()),
        pa.field("volume", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
    ]
)
DAILY_BARS_COLUMNS = DAILY_BARS_SCHEMA.names
PRICE_COLUMNS = ["open", "high", "low", "close"]

# yfinance's field names (the `Price` level of its columns) -> ours.
_YF_FIELDS = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}
YF_COLUMNS = ["symbol", "ts", *_YF_FIELDS.values()]


class HistoryRangeError(ValueError):
    """Daily history asked for before HISTORY_START_DATE, or a HISTORY_START_DATE that is wrong."""


@cache
def history_start() -> date:
    """HISTORY_START_DATE: the first NYSE trading day daily history covers."""
    try:
        day = get_settings().history_start_date
    except SettingsError as err:  # HISTORY_START_DATE is not a date, or another variable is bad
        raise HistoryRangeError(str(err)) from None
    calendar = exchange_calendars.get_calendar(EXCHANGE, start=day - timedelta(days=7))
    if not calendar.is_session(pd.Timestamp(day)):
        following = calendar.date_to_session(pd.Timestamp(day), direction="next").date()
        raise HistoryRangeError(
            f"HISTORY_START_DATE={day} is not an NYSE trading day; the next one is {following}"
        )
    return day


@cache
def exchange_calendar() -> exchange_calendars.ExchangeCalendar:
    return exchange_calendars.get_calendar(EXCHANGE, start=history_start())


def check_history_range(start: date, end: date) -> None:
    if start < history_start():
        raise HistoryRangeError(
            f"daily history {start}..{end} starts before HISTORY_START_DATE={history_start()}: "
            "set HISTORY_START_DATE to an earlier trading day (and restart Dagster) to backfill it"
        )


def trading_sessions(start: date, end: date, closed_by: datetime | None = None) -> list[date]:
    """NYSE sessions in [start, end], with `closed_by` only those whose close is not later.

    Refuses a range that starts before HISTORY_START_DATE; dates after the calendar's end
    have none.
    """
    check_history_range(start, end)
    calendar = exchange_calendar()
    first = max(pd.Timestamp(start), calendar.first_session)
    last = min(pd.Timestamp(end), calendar.last_session)
    if first > last:
        return []
    sessions = calendar.sessions_in_range(first, last)
    if closed_by is not None:
        sessions = sessions[calendar.closes[sessions] <= pd.Timestamp(closed_by)]
    return [ts.date() for ts in sessions]


def _rate_limited(exc: Exception) -> bool:
    from yfinance.exceptions import YFRateLimitError  # only ever called from download_yfinance

    response = getattr(exc, "response", None)
    return isinstance(exc, YFRateLimitError) or getattr(response, "status_code", None) == 429


def download_yfinance(
    symbols: Sequence[str],
    start: date | datetime,
    end: date | datetime,
    interval: str = "1d",
    *,
    attempts: int = 4,
    backoff_seconds: float = 2.0,
) -> tuple[pd.DataFrame, list[str]]:
    """Bars for many symbols from Yahoo Finance, in as few calls as it allows.

    Returns a long frame with columns `YF_COLUMNS`: symbol, ts (bar start, tz-aware UTC), open,
    high, low, close (as traded: split- but not dividend-adjusted), adj_close (split- and
    dividend-adjusted; null when Yahoo sends none), volume (nullable Int64); and the symbols that
    came back empty or all-NaN, which are never returned as rows. `end` is exclusive, as in
    yfinance.

    - Calls `yf.download` with explicit `auto_adjust=False` (its default changed over versions;
      raw closes are what the stream trades at), `ignore_tz=False` (daily bars otherwise come
      tz-naive) and `group_by="column"`, so columns are a MultiIndex (Price, Ticker) even for one
      ticker.
    - A raised `YFRateLimitError` or HTTP 429 retries the call after an exponential backoff
      (`backoff_seconds` x 1, 2, 4, ...), `attempts` calls in all, then re-raises.
    - `yf.download` turns a per-ticker failure (a rate limit included) into an all-NaN column,
      so empty tickers are retried the same way before being reported. A ticker with truly no
      data therefore costs the whole backoff (14 s by default): pollers may pass `attempts=1`.
    """
    # Imported here: every run worker loads this module, and yfinance only this function needs.
    import yfinance as yf

    pending = list(dict.fromkeys(symbols))
    frames: list[pd.DataFrame] = []
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
        try:
            raw = yf.download(
                pending,
                start=start,
                end=end,
                interval=interval,
                auto_adjust=False,
                ignore_tz=False,
                group_by="column",
                multi_level_index=True,
                actions=False,
                progress=False,
            )
        except Exception as exc:
            if not _rate_limited(exc) or attempt == attempts - 1:
                raise
            continue
        bars = _yfinance_long(raw)
        frames.append(bars)
        found = set(bars["symbol"])
        pending = [s for s in pending if s not in found]
        if not pending:
            break
    return pd.concat(frames).sort_values(["symbol", "ts"], ignore_index=True), pending


def _yfinance_long(raw: pd.DataFrame | None) -> pd.DataFrame:
    """yfinance's wide (Price, Ticker) frame as one row per ticker and bar, NaN bars dropped."""
    if raw is None or raw.empty:
        empty = pd.DataFrame({column: [] for column in YF_COLUMNS})
        return empty.astype({"ts": "datetime64[ns, UTC]", "volume": "Int64"})
    long = raw.stack(level="Ticker").rename(columns=_YF_FIELDS)
    long = long.rename_axis(index=["ts", "symbol"], columns=None).reset_index()
    long = long.reindex(columns=YF_COLUMNS).dropna(subset=PRICE_COLUMNS)
    long["ts"] = pd.DatetimeIndex(long["ts"]).tz_convert("UTC")
    long["volume"] = long["volume"].round().astype("Int64")
    long["adj_close"] = long["adj_close"].astype("float64")
    return long


def yfinance_daily_bars(symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
    bars, _ = download_yfinance(symbols, start, end + timedelta(days=1), interval="1d")
    # A daily bar starts at midnight exchange time: its date there is the trading date.
    bars["date"] = bars["ts"].dt.tz_convert(EXCHANGE_TZ).dt.date
    return bars.assign(source="yfinance")


SYNTHETIC_EPOCH = date(2000, 1, 3)


def synthetic_daily_bars(symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Random-walk bars on NYSE sessions, fixed per symbol from SYNTHETIC_EPOCH.

    Each symbol's path is drawn over every weekday since the epoch from a seed derived from the
    symbol alone, so a date's bar is the same whatever range is asked for.
    """
    sessions = pd.DatetimeIndex(pd.to_datetime(trading_sessions(start, end)))
    weekdays = pd.bdate_range(SYNTHETIC_EPOCH, max(end, SYNTHETIC_EPOCH))
    wanted = weekdays.isin(sessions)
    frames = []
    for symbol in symbols:
        seed = zlib.crc32(symbol.encode())
        # One row of draws per weekday: a longer range only appends rows.
        z = np.random.default_rng(seed).standard_normal((len(weekdays), 5)).T
        first_price = 20.0 + seed % 480
        close = first_price * np.exp(np.cumsum(0.0002 + 0.015 * z[0]))
        open_ = np.concatenate([[first_price], close[:-1]]) * np.exp(0.004 * z[1])
        high = np.maximum(open_, close) * np.exp(np.abs(0.006 * z[2]))
        low = np.minimum(open_, close) * np.exp(-np.abs(0.006 * z[3]))
        volume = np.round(2e6 * (1 + seed % 40) * np.exp(0.35 * z[4])).astype("int64")
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "date": weekdays.date[wanted],
                    "open": open_[wanted],
                    "high": high[wanted],
                    "low": low[wanted],
                    "close": close[wanted],
                    "volume": volume[wanted],
                }
            )
        )
    return pd.concat(frames, ignore_index=True).assign(source="synthetic")


def csv_daily_bars(path: str, symbols: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """Vendor files with columns date, symbol, open, high, low, close, volume (adj_close optional).

    `path` is one file holding every symbol, or a folder of `<SYMBOL>.csv` files, where the
    symbol column may be left out.
    """
    location = Path(path)
    if location.is_dir():
        files = {s: location / f"{s}.csv" for s in symbols if (location / f"{s}.csv").exists()}
    else:
        files = {None: location}
    frames = []
    for symbol, file in files.items():
        frame = csv_files.read_csv(file)
        if symbol is not None and "symbol" not in frame:
            frame["symbol"] = symbol
        csv_files.require_columns(file, frame, "date", "symbol", *PRICE_COLUMNS, "volume")
        csv_files.require_values(file, frame, "symbol")
        columns = {
            "symbol": frame["symbol"].str.upper(),
            "date": csv_files.dates(file, frame, "date", EXCHANGE_TZ),
        }
        # An empty price is a day without a bar (vendors write `null`); text is an error.
        for name in [*PRICE_COLUMNS, "volume", "adj_close"]:
            if name in frame:
                columns[name] = csv_files.numbers(file, frame, name, required=False)
        columns["volume"] = columns["volume"].round().astype("Int64")
        frames.append(pd.DataFrame(columns))
    if not frames:
        return pd.DataFrame(columns=DAILY_BARS_COLUMNS)
    bars = pd.concat(frames, ignore_index=True)
    bars = bars[bars["symbol"].isin(symbols) & bars["date"].between(start, end)]
    duplicated = bars.duplicated(["symbol", "date"], keep=False)
    if duplicated.any():
        rows = bars.loc[duplicated, ["symbol", "date"]].drop_duplicates()
        raise csv_files.UnreadableCsvError(
            f"{path}: more than one bar for {rows.to_dict('records')}"
        )
    return bars.dropna(subset=PRICE_COLUMNS).assign(source="csv")


class MarketDataResource(dg.ConfigurableResource):
    """Official daily bars; `source` is `synthetic`, `yfinance` or `csv:<path>`."""

    source: str = "synthetic"

    def daily_bars(
        self, symbols: Sequence[str], start: date, end: date
    ) -> tuple[pd.DataFrame, list[str]]:
        """Bars for trading dates in [start, end] (`DAILY_BARS_COLUMNS`, sorted by date and
        symbol), and the symbols the source had no bar for in that range."""
        check_history_range(start, end)
        kind, _, path = self.source.partition(":")
        if kind == "synthetic":
            bars = synthetic_daily_bars(symbols, start, end)
        elif kind == "yfinance":
            bars = yfinance_daily_bars(symbols, start, end)
        elif kind == "csv" and path:
            bars = csv_daily_bars(path, symbols, start, end)
        else:
            raise ValueError(
                f"MARKET_DATA_SOURCE={self.source!r}: use synthetic, yfinance or csv:PATH"
            )
        bars = bars.reindex(columns=DAILY_BARS_COLUMNS).sort_values(["date", "symbol"])
        found = set(bars["symbol"])
        return bars.reset_index(drop=True), [s for s in symbols if s not in found]
