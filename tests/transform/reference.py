"""The marts computed independently with pandas, from the ticks put on the stream.

Used by the tests as the reference the warehouse must match, and by the full-refresh benchmark
as the baseline. Vectorised: group-bys and per-symbol sliding windows, no per-row Python.
"""

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def unique_ticks(ticks: pd.DataFrame) -> pd.DataFrame:
    """Each event_id once (a re-sent tick is the same tick), in event-time order."""
    out = ticks.drop_duplicates("event_id").copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    out["minute_ts"] = out["ts"].dt.floor("min")
    out["trade_date"] = out["ts"].dt.tz_convert(None).dt.normalize()
    out["turnover"] = out["price"] * out["volume"]
    return out.sort_values(["symbol", "ts", "event_id"], ignore_index=True)


def _ohlcv(ticks: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    bars = ticks.groupby(keys, sort=True).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("volume", "sum"),
        turnover=("turnover", "sum"),
        trade_count=("price", "size"),
        last_ts=("ts", "max"),
    )
    bars["vwap"] = bars["turnover"] / bars["volume"].where(bars["volume"] != 0)
    return bars.drop(columns="turnover").reset_index()


def minute_bars(ticks: pd.DataFrame) -> pd.DataFrame:
    bars = _ohlcv(ticks, ["symbol", "minute_ts"])
    bars["trade_date"] = bars["minute_ts"].dt.tz_convert(None).dt.normalize()
    return bars


def _rolling(values: np.ndarray, window: int, statistic) -> np.ndarray:
    """statistic over each full window of `window` values ending at each position, else NaN."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1 :] = statistic(sliding_window_view(values, window), axis=1)
    return out


def moving_averages(bars: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for _, group in bars.sort_values(["symbol", "minute_ts"]).groupby("symbol", sort=False):
        close = group["close"].to_numpy()
        sma_20 = _rolling(close, 20, np.mean)
        std_20 = _rolling(close, 20, np.std)  # ddof = 0
        parts.append(
            pd.DataFrame(
                {
                    "symbol": group["symbol"].to_numpy(),
                    "minute_ts": group["minute_ts"].to_numpy(),
                    "close": close,
                    "bar_number": np.arange(1, len(close) + 1),
                    "sma_5": _rolling(close, 5, np.mean),
                    "sma_20": sma_20,
                    "sma_50": _rolling(close, 50, np.mean),
                    "bollinger_upper": sma_20 + 2 * std_20,
                    "bollinger_lower": sma_20 - 2 * std_20,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def daily_prices(ticks: pd.DataFrame, bars: pd.DataFrame) -> pd.DataFrame:
    days = _ohlcv(ticks, ["symbol", "trade_date"])
    bars = bars.sort_values(["symbol", "minute_ts"])
    log_return = np.log(bars["close"] / bars.groupby(["symbol", "trade_date"])["close"].shift())
    squared = (log_return**2).groupby([bars["symbol"], bars["trade_date"]]).sum(min_count=1)
    days = days.merge(np.sqrt(squared).rename("realized_vol").reset_index(), how="left")
    days["prev_close"] = days.groupby("symbol")["close"].shift()
    days["daily_return"] = days["close"] / days["prev_close"] - 1
    return days


def latest_quotes(days: pd.DataFrame, averages: pd.DataFrame) -> pd.DataFrame:
    last = days.sort_values("trade_date").groupby("symbol").tail(1)
    last = last.assign(minute_ts=last["last_ts"].dt.floor("min"))
    last = last.merge(averages[["symbol", "minute_ts", "sma_20"]], how="left")
    return pd.DataFrame(
        {
            "symbol": last["symbol"],
            "last_price": last["close"],
            "last_ts": last["last_ts"],
            "prev_close": last["prev_close"],
            "change": last["close"] - last["prev_close"],
            "relative_change": last["close"] / last["prev_close"] - 1,
            "sma_20": last["sma_20"],
        }
    )


def marts(ticks: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every mart, by model name, from raw ticks (duplicates allowed)."""
    ticks = unique_ticks(ticks)
    bars = minute_bars(ticks)
    averages = moving_averages(bars)
    days = daily_prices(ticks, bars)
    return {
        "minute_bars": bars,
        "moving_averages": averages,
        "daily_prices": days,
        "latest_quotes": latest_quotes(days, averages),
    }
