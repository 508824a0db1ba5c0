"""Market data sources: yfinance's real shapes (no network), synthetic determinism, vendor CSVs."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import yfinance as yf
from yfinance.exceptions import YFRateLimitError

from stock_pipeline.csv_files import UnreadableCsvError
from stock_pipeline.resources import market_data
from stock_pipeline.resources.market_data import (
    DAILY_BARS_COLUMNS,
    HistoryRangeError,
    MarketDataResource,
    download_yfinance,
    exchange_calendar,
    history_start,
    trading_sessions,
)
from stock_pipeline.settings import get_settings

FIELDS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]


def ticker_history(days: list[str], first_close: float) -> pd.DataFrame:
    """What `yf.Ticker.history(interval="1d", auto_adjust=False)` returns for one ticker:
    a tz-aware index of local midnights named Date, float columns."""
    index = pd.DatetimeIndex(pd.to_datetime(days), name="Date").tz_localize("America/New_York")
    close = first_close + np.arange(len(days), dtype=float)
    return pd.DataFrame(
        {
            "Open": close - 0.5,
            "High": close + 1.0,
            "Low": close - 1.0,
            "Close": close,
            "Adj Close": close * 0.98,
            "Volume": np.full(len(days), 1_000_000.0),
        },
        index=index,
    )


def download_frame(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What `yf.download(..., group_by="column")` builds from per-ticker histories: every ticker
    reindexed to the union of dates (a failed ticker is an empty frame, so all NaN), concatenated
    under a (Price, Ticker) MultiIndex, even for a single ticker."""
    index = pd.DatetimeIndex([])
    for history in histories.values():
        if not history.empty:
            index = history.index if index.empty else index.union(history.index)
    frames = {ticker: history.reindex(index) for ticker, history in histories.items()}
    data = pd.concat(
        frames.values(), axis=1, sort=True, keys=frames.keys(), names=["Ticker", "Price"]
    )
    data.columns = data.columns.swaplevel(0, 1)
    return data.sort_index(level=0, axis=1)


# yfinance.utils.empty_df(): what a failed ticker contributes.
EMPTY = pd.DataFrame({field: np.nan for field in FIELDS}, index=pd.Index([], name="Date"))
DAYS = ["2025-12-01", "2025-12-02", "2025-12-03"]


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(market_data.time, "sleep", waited.append)
    return waited


def fake_download(monkeypatch, *responses):
    """yf.download answering each call with the next response (a frame, or an error to raise)."""
    calls: list[dict] = []

    def download(tickers, **kwargs):
        calls.append({"tickers": list(tickers), **kwargs})
        response = responses[len(calls) - 1]
        if isinstance(response, Exception):
            raise response
        return response

    monkeypatch.setattr(yf, "download", download)
    return calls


def test_multiindex_frame_becomes_long_bars_and_all_nan_ticker_is_reported(monkeypatch, sleeps):
    histories = {"AAPL": ticker_history(DAYS, 100.0), "MSFT": ticker_history(DAYS[1:], 400.0)}
    calls = fake_download(
        monkeypatch,
        download_frame({**histories, "ZZZZ": EMPTY}),
        *[download_frame({"ZZZZ": EMPTY})] * 3,
    )

    bars, empty = download_yfinance(["AAPL", "MSFT", "ZZZZ"], date(2025, 12, 1), date(2025, 12, 4))

    assert empty == ["ZZZZ"]
    assert list(bars.columns) == market_data.YF_COLUMNS
    # MSFT's missing first day (NaN after reindexing) is not a bar; nothing is written as zero.
    assert bars.groupby("symbol").size().to_dict() == {"AAPL": 3, "MSFT": 2}
    assert str(bars["ts"].dt.tz) == "UTC"
    msft = bars[bars["symbol"] == "MSFT"].reset_index(drop=True)
    assert msft["ts"].tolist() == [
        pd.Timestamp("2025-12-02 05:00", tz="UTC"),
        pd.Timestamp("2025-12-03 05:00", tz="UTC"),
    ]
    assert msft["close"].tolist() == [400.0, 401.0]
    assert msft["adj_close"].tolist() == [400.0 * 0.98, 401.0 * 0.98]
    assert msft["volume"].tolist() == [1_000_000, 1_000_000]
    # Explicit arguments: raw and adjusted close, tz-aware index, (Price, Ticker) columns.
    first = calls[0]
    assert first["auto_adjust"] is False and first["ignore_tz"] is False
    assert first["group_by"] == "column" and first["multi_level_index"] is True
    # The empty ticker alone is retried with backoff before being reported.
    assert [c["tickers"] for c in calls[1:]] == [["ZZZZ"]] * 3
    assert sleeps == [2.0, 4.0, 8.0]


def test_single_ticker_still_multiindex_and_daily_bar_dated_in_new_york(monkeypatch, sleeps):
    calls = fake_download(monkeypatch, download_frame({"AAPL": ticker_history(DAYS, 100.0)}))

    bars = market_data.yfinance_daily_bars(["AAPL"], date(2025, 12, 1), date(2025, 12, 3))

    assert bars["date"].tolist() == [date(2025, 12, 1), date(2025, 12, 2), date(2025, 12, 3)]
    assert (bars["source"] == "yfinance").all()
    # yfinance's end is exclusive: the last requested day is asked for with end = day + 1.
    assert calls[0]["start"] == date(2025, 12, 1) and calls[0]["end"] == date(2025, 12, 4)
    assert sleeps == []


def test_intraday_bars_keep_their_instant(monkeypatch, sleeps):
    index = pd.DatetimeIndex(
        ["2025-12-01 09:30", "2025-12-01 09:31"], name="Datetime", tz="America/New_York"
    )
    history = pd.DataFrame({f: [10.0, 11.0] for f in FIELDS}, index=index)
    fake_download(monkeypatch, download_frame({"AAPL": history}))

    bars, empty = download_yfinance(["AAPL"], date(2025, 12, 1), date(2025, 12, 2), "1m")

    assert empty == []
    assert bars["ts"].tolist() == [
        pd.Timestamp("2025-12-01 14:30", tz="UTC"),
        pd.Timestamp("2025-12-01 14:31", tz="UTC"),
    ]


class Http429(Exception):
    class response:  # noqa: N801 - the shape of requests' HTTPError.response
        status_code = 429


def test_rate_limit_then_http_429_are_retried_with_backoff(monkeypatch, sleeps):
    frame = download_frame({"AAPL": ticker_history(DAYS, 100.0)})
    calls = fake_download(monkeypatch, YFRateLimitError(), Http429("Too Many Requests"), frame)

    bars, empty = download_yfinance(["AAPL"], date(2025, 12, 1), date(2025, 12, 4))

    assert len(calls) == 3 and sleeps == [2.0, 4.0]
    assert len(bars) == 3 and empty == []


def test_rate_limit_on_every_attempt_raises_and_other_errors_are_not_retried(monkeypatch, sleeps):
    fake_download(monkeypatch, *[YFRateLimitError()] * 4)
    with pytest.raises(YFRateLimitError):
        download_yfinance(["AAPL"], date(2025, 12, 1), date(2025, 12, 4))
    assert sleeps == [2.0, 4.0, 8.0]

    calls = fake_download(monkeypatch, ValueError("bad ticker list"))
    with pytest.raises(ValueError):
        download_yfinance(["AAPL"], date(2025, 12, 1), date(2025, 12, 4))
    assert len(calls) == 1


def test_synthetic_bars_are_deterministic_per_symbol_and_date():
    source = MarketDataResource(source="synthetic")
    month, empty = source.daily_bars(["AAPL", "MSFT"], date(2025, 11, 24), date(2025, 12, 23))
    again, _ = source.daily_bars(["MSFT", "AAPL"], date(2025, 11, 24), date(2025, 12, 23))
    one_day, _ = source.daily_bars(["MSFT"], date(2025, 12, 2), date(2025, 12, 2))

    assert empty == []
    assert list(month.columns) == DAILY_BARS_COLUMNS
    pd.testing.assert_frame_equal(month, again)
    same_day = month[(month["symbol"] == "MSFT") & (month["date"] == date(2025, 12, 2))]
    pd.testing.assert_frame_equal(same_day.reset_index(drop=True), one_day)
    # NYSE sessions only: Thanksgiving (2025-11-27) and weekends have no bar.
    days = set(month["date"])
    assert date(2025, 11, 27) not in days and date(2025, 11, 29) not in days
    assert len(days) == 21
    assert (month["low"] <= month[["open", "close"]].min(axis=1)).all()
    assert (month["high"] >= month[["open", "close"]].max(axis=1)).all()
    assert (month["low"] > 0).all() and (month["volume"] > 0).all()


def test_csv_single_file_and_one_file_per_symbol(tmp_path):
    rows = "date,symbol,open,high,low,close,volume\n"
    rows += "2025-12-01,AAPL,10,12,9,11,100\n2025-12-02,AAPL,11,13,10,12,200\n"
    rows += "2025-12-01,MSFT,20,22,19,21,300\n2025-12-03,AAPL,12,14,11,13,400\n"
    (tmp_path / "all.csv").write_text(rows)
    folder = tmp_path / "vendor"
    folder.mkdir()
    (folder / "AAPL.csv").write_text(
        "Date,Open,High,Low,Close,Volume\n2025-12-02,11,13,10,12,200\n"
    )

    bars, empty = MarketDataResource(source=f"csv:{tmp_path / 'all.csv'}").daily_bars(
        ["AAPL", "MSFT", "NVDA"], date(2025, 12, 1), date(2025, 12, 2)
    )
    assert empty == ["NVDA"]
    assert bars[["symbol", "date", "close", "volume"]].values.tolist() == [
        ["AAPL", date(2025, 12, 1), 11.0, 100],
        ["MSFT", date(2025, 12, 1), 21.0, 300],
        ["AAPL", date(2025, 12, 2), 12.0, 200],
    ]
    assert (bars["source"] == "csv").all() and bars["adj_close"].isna().all()

    bars, empty = MarketDataResource(source=f"csv:{folder}").daily_bars(
        ["AAPL", "MSFT"], date(2025, 12, 1), date(2025, 12, 31)
    )
    assert empty == ["MSFT"]
    assert bars[["symbol", "date", "open", "high", "low", "close"]].values.tolist() == [
        ["AAPL", date(2025, 12, 2), 11.0, 13.0, 10.0, 12.0]
    ]


def test_csv_with_two_bars_for_one_day_is_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(
        "date,symbol,open,high,low,close,volume\n"
        "2025-12-01,AAPL,10,12,9,11,100\n2025-12-01,AAPL,10,12,9,11.5,100\n"
    )
    with pytest.raises(ValueError, match="more than one bar"):
        MarketDataResource(source=f"csv:{path}").daily_bars(
            ["AAPL"], date(2025, 12, 1), date(2025, 12, 1) + timedelta(days=1)
        )


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="MARKET_DATA_SOURCE"):
        MarketDataResource(source="bloomberg").daily_bars(
            ["AAPL"], date(2025, 12, 1), date(2025, 12, 1)
        )


def test_csv_bars_as_people_save_them(tmp_path):
    path = tmp_path / "bars.csv"
    # Byte-order mark, CRLF, a vendor's "null" day, and dates written four ways: plain, a
    # midnight in New York with its offset, the same instant in UTC, and a naive time.
    path.write_bytes(
        b"\xef\xbb\xbfDate,Symbol,Open,High,Low,Close,Adj Close,Volume\r\n"
        b"2025-12-01,AAPL,10,12,9,11,10.5,100\r\n"
        b"2025-12-02T00:00:00-05:00,AAPL,11,13,10,12,,200\r\n"
        b"2025-12-03T05:00:00.000Z,AAPL,12,14,11,13,,300\r\n"
        b"2025-12-04T00:00:00,AAPL,13,15,12,14,,400\r\n"
        b"2025-12-05,AAPL,null,null,null,null,null,null\r\n"
    )
    bars, empty = MarketDataResource(source=f"csv:{path}").daily_bars(
        ["AAPL"], date(2025, 12, 1), date(2025, 12, 5)
    )
    assert empty == []
    assert bars[["date", "close", "volume"]].values.tolist() == [
        [date(2025, 12, 1), 11.0, 100],
        [date(2025, 12, 2), 12.0, 200],
        [date(2025, 12, 3), 13.0, 300],
        [date(2025, 12, 4), 14.0, 400],
    ]
    assert bars["adj_close"].iloc[0] == 10.5 and bars["adj_close"].iloc[1:].isna().all()


def test_unreadable_bar_file_names_file_line_and_column(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text(
        "date,symbol,open,high,low,close,volume\n"
        "2025-12-01,AAPL,10,12,9,11,100\n2025-12-02,AAPL,11,13,10,twelve,200\n"
    )
    with pytest.raises(UnreadableCsvError, match=r"bars.csv: line 3, column close: 'twelve'"):
        MarketDataResource(source=f"csv:{path}").daily_bars(
            ["AAPL"], date(2025, 12, 1), date(2025, 12, 2)
        )


def test_history_before_its_start_date_is_refused_with_the_variable_to_change(monkeypatch):
    with pytest.raises(HistoryRangeError, match=r"before HISTORY_START_DATE=2000-01-03: set"):
        MarketDataResource(source="synthetic").daily_bars(
            ["AAPL"], date(1999, 12, 1), date(2000, 1, 31)
        )
    for value, message in [
        ("2000-01-01", "not an NYSE trading day; the next one is 2000-01-03"),
        ("January 2000", "is not a date"),
    ]:
        monkeypatch.setenv("HISTORY_START_DATE", value)
        get_settings.cache_clear()
        history_start.cache_clear()
        with pytest.raises(HistoryRangeError, match=message):
            history_start()
    monkeypatch.setenv("HISTORY_START_DATE", "1990-01-02")
    get_settings.cache_clear()
    history_start.cache_clear()
    exchange_calendar.cache_clear()
    try:
        assert trading_sessions(date(1990, 1, 2), date(1990, 1, 5))[0] == date(1990, 1, 2)
    finally:
        monkeypatch.undo()
        history_start.cache_clear()
        exchange_calendar.cache_clear()
