"""Response models: what `/docs` describes and every JSON response is checked against."""

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

LAG_SECONDS = (
    "Seconds from the newest tick's arrival on the stream (its Kinesis approximate arrival "
    "time, `arrival_ts`, the newest in the warehouse snapshot served) to the moment the server "
    "answered. It covers everything between the stream and the marts (the sensor's poll, the "
    "lake write, the dbt build), and it also grows while nothing arrives on the stream. Null "
    "before the first tick is loaded."
)


class Problem(BaseModel):
    detail: str = Field(description="What is wrong, starting with the parameter it is about.")


class SymbolInfo(BaseModel):
    symbol: str
    first_tick_ts: datetime | None = Field(description="Event time of the symbol's first tick.")
    last_tick_ts: datetime | None = Field(description="Event time of the symbol's last tick.")
    first_trade_date: date | None = Field(description="First day of its official daily bars.")
    last_trade_date: date | None = Field(description="Last day of its official daily bars.")


class Symbols(BaseModel):
    symbols: list[SymbolInfo]


class Quote(BaseModel):
    symbol: str
    last_price: float = Field(description="Price of the symbol's last tick.")
    last_ts: datetime = Field(description="Event time of that tick.")
    prev_close: float | None = Field(description="Close of the previous trading day.")
    change: float | None = Field(description="last_price − prev_close.")
    relative_change: float | None = Field(description="last_price / prev_close − 1.")
    sma_20: float | None = Field(description="SMA-20 of the minute bar of the last tick.")
    updated_at: datetime = Field(description="When the warehouse loaded the data of this row.")


class LatestQuotes(BaseModel):
    as_of: datetime = Field(description="When the warehouse build served here completed.")
    snapshot_id: int = Field(description="The warehouse snapshot every row was read from.")
    lag_seconds: float | None = Field(description=LAG_SECONDS)
    quotes: list[Quote]


class MinuteBar(BaseModel):
    ts: datetime = Field(description="Start of the minute.")
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float | None
    trade_count: int
    sma_5: float | None
    sma_20: float | None
    sma_50: float | None
    bollinger_upper: float | None = Field(description="sma_20 + 2 population std of 20 closes.")
    bollinger_lower: float | None = Field(description="sma_20 − 2 population std of 20 closes.")


class DailyBar(BaseModel):
    ts: datetime = Field(description="Midnight of the trading day in New York.")
    trade_date: date = Field(description="Trading date in exchange time (New York).")
    open: float | None
    high: float | None
    low: float | None
    close: float
    adj_close: float | None
    volume: int | None
    daily_return: float | None
    sma_20: float | None
    sma_50: float | None
    sma_200: float | None
    ema_12: float | None
    ema_26: float | None
    macd_line: float | None
    macd_signal: float | None
    macd_histogram: float | None
    rsi_14: float | None
    bollinger_middle: float | None
    bollinger_upper: float | None
    bollinger_lower: float | None
    high_52w: float | None
    low_52w: float | None


class Bars(BaseModel):
    symbol: str
    timeframe: Literal["1Min", "1Day"]
    snapshot_id: int
    bars: list[MinuteBar] | list[DailyBar] = Field(description="In time order, oldest first.")
    next_page_token: str | None = Field(
        description="Pass as `page_token` with the same symbol and timeframe for the bars after "
        "these; null on the last page."
    )


class Alert(BaseModel):
    alert_id: str = Field(description="Stable identity, e.g. `price_jump:AAPL:<minute>`.")
    kind: str = Field(description="`anomaly`, `run_failure` or `freshness`.")
    rule: str
    severity: Literal["WARN", "ERROR"]
    asset_key: str | None
    event_time: datetime = Field(description="The minute or moment the alert is about.")
    symbol: str | None
    value: float | None
    threshold: float | None
    summary: str
    message_id: str = Field(description="SNS message id of the one delivery.")
    sent_at: datetime = Field(description="When SNS accepted it.")


class Alerts(BaseModel):
    alerts: list[Alert] = Field(description="Newest event time first.")


class MartBuild(BaseModel):
    name: str
    last_materialized_at: datetime | None = Field(
        description="When a build last changed this mart, in the snapshot served."
    )


class StreamHealth(BaseModel):
    consuming: bool = Field(
        description="True when `lag_seconds` is at most `max_lag_seconds`: ticks put on the "
        "stream reach the marts. False when the pipeline is stopped or stalled, or nothing "
        "has been put on the stream for that long."
    )
    newest_arrival_ts: datetime | None = Field(
        description="Kinesis arrival time of the newest tick in the warehouse."
    )
    lag_seconds: float | None = Field(description=LAG_SECONDS)
    max_lag_seconds: float = Field(description="LATEST_QUOTES_MAX_AGE_MINUTES, in seconds.")


class Health(BaseModel):
    status: Literal["ok", "stale"] = Field(
        description="`ok` when the stream is consumed and latest_quotes is younger than "
        "`stream.max_lag_seconds`."
    )
    as_of: datetime = Field(description="When the warehouse build served here completed.")
    snapshot_id: int
    latest_quotes_age_seconds: float | None = Field(
        description="Seconds since latest_quotes was last materialised."
    )
    marts: list[MartBuild]
    stream: StreamHealth
