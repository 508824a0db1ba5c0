"""Anomaly rules over the `minute_bars` mart, computed in one DuckDB query.

Every anomaly has a stable identity (rule, symbol, minute): evaluating the rules again over the
same bars gives the same anomalies. A run of consecutive flagged minutes (a spike that straddles
a minute boundary, a feed that stays quiet) is one anomaly, named by its first minute.

Windows never cross a UTC trading date, so the overnight gap is not a "return".
"""

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from stock_pipeline.settings import get_settings

SEVERITY = {
    "price_jump": "WARN",
    "volume_spike": "WARN",
    "stale_feed": "WARN",
    "high_below_low": "ERROR",
    "negative_volume": "ERROR",
    "implausible_price": "ERROR",
}
# The asset check that reports each rule: the impossible-data rules share one ERROR check.
CHECK = {
    "price_jump": "price_jump",
    "volume_spike": "volume_spike",
    "stale_feed": "stale_feed",
    "high_below_low": "impossible_data",
    "negative_volume": "impossible_data",
    "implausible_price": "impossible_data",
}


class AnomalyRules(dg.Config):
    """Thresholds of the anomaly rules; the defaults give no alerts on a normal trading day.

    Each default comes from its ANOMALY_* environment variable (settings.py), so automatic runs,
    which take no run config, use what the deployment sets; a run's config overrides it.
    """

    window_bars: int = Field(
        default=get_settings().anomaly_window_bars,
        ge=2,
        description="Bars of the symbol's recent history the z-score and median use "
        "(ANOMALY_WINDOW_BARS).",
    )
    min_history: int = Field(
        default=get_settings().anomaly_min_history,
        ge=1,
        description="Fewest earlier bars that day before jumps and spikes are judged "
        "(ANOMALY_MIN_HISTORY).",
    )
    price_jump_z: float = Field(
        default=get_settings().anomaly_price_jump_z,
        gt=0,
        description=(
            "Flag a 1-minute return beyond this many times the recent per-minute volatility "
            "(root mean square of the earlier returns). Short windows have fat tails: normal "
            "sessions reach 8 (ANOMALY_PRICE_JUMP_Z)."
        ),
    )
    volume_spike_ratio: float = Field(
        default=get_settings().anomaly_volume_spike_ratio,
        gt=1,
        description="Flag a minute volume above this multiple of the recent median "
        "(ANOMALY_VOLUME_SPIKE_RATIO).",
    )
    stale_minutes: int = Field(
        default=get_settings().anomaly_stale_minutes,
        ge=1,
        description="Flag a symbol with no bar for this many minutes in which others traded "
        "(ANOMALY_STALE_MINUTES).",
    )
    plausible_price_ratio: float = Field(
        default=get_settings().anomaly_plausible_price_ratio,
        gt=1,
        description="Flag a bar priced beyond this factor above or below the day's median close "
        "(ANOMALY_PLAUSIBLE_PRICE_RATIO). dbt's test on minute_bars that blocks the marts reads "
        "the environment variable only: set there, not in a run's config, to unblock them.",
    )


ANOMALIES_SQL = """
with bars as (
    select
        symbol,
        minute_ts,
        minute_ts::date as trade_date,
        high,
        low,
        close,
        volume
    from minute_bars
),

returns as (
    select
        *,
        -- Scaled to one minute (a random walk's spread grows with the square root of time),
        -- so the first bar after a quiet stretch is not mistaken for a jump.
        (close / lag(close) over by_minute - 1)
        / sqrt(date_diff('minute', lag(minute_ts) over by_minute, minute_ts)) as ret
    from bars
    window by_minute as (partition by symbol, trade_date order by minute_ts)
),

scored as (
    select
        symbol,
        minute_ts,
        trade_date,
        -- Against zero, not the window's mean: a short window's drift would make a reversal look
        -- extreme.
        ret / nullif(sqrt(avg(ret * ret) over recent), 0) as return_z,
        count(ret) over recent as return_history,
        volume / nullif(median(volume) over recent, 0) as volume_ratio,
        count(volume) over recent as volume_history
    from returns
    window recent as (
        partition by symbol, trade_date order by minute_ts
        rows between $window preceding and 1 preceding
    )
),

flagged as (
    select
        *,
        coalesce(return_history >= $min_history and abs(return_z) > $jump_z, false) as is_jump,
        coalesce(volume_history >= $min_history and volume_ratio > $spike_ratio, false)
            as is_spike
    from scored
),

episodes as (
    select
        *,
        lag(is_jump, 1, false) over by_minute as was_jump,
        lag(is_spike, 1, false) over by_minute as was_spike
    from flagged
    window by_minute as (partition by symbol, trade_date order by minute_ts)
),

live_minutes as (
    select distinct trade_date, minute_ts from bars
),

day_symbols as (
    select distinct trade_date, symbol from bars
),

presence as (
    select
        s.symbol,
        m.trade_date,
        m.minute_ts,
        b.symbol is not null as present
    from live_minutes as m
    inner join day_symbols as s on m.trade_date = s.trade_date
    left join bars as b on s.symbol = b.symbol and m.minute_ts = b.minute_ts
),

quiet as (
    -- Minutes others traded and this symbol did not, numbered by the bars seen before them:
    -- one number per quiet stretch.
    select
        symbol,
        trade_date,
        minute_ts,
        present,
        sum(present::int) over (
            partition by symbol, trade_date order by minute_ts rows unbounded preceding
        ) as stretch
    from presence
),

day_ranges as (
    select
        symbol,
        trade_date,
        median(close) * $price_ratio as upper_bound,
        median(close) / $price_ratio as lower_bound
    from bars
    group by symbol, trade_date
)

select 'price_jump' as rule, symbol, minute_ts, return_z as value, $jump_z as threshold
from episodes
where is_jump and not was_jump

union all

select 'volume_spike', symbol, minute_ts, volume_ratio, $spike_ratio
from episodes
where is_spike and not was_spike

union all

select 'stale_feed', symbol, min(minute_ts), count(*), $stale_minutes
from quiet
where not present
group by symbol, trade_date, stretch
having count(*) >= $stale_minutes

union all

select 'high_below_low', symbol, minute_ts, high - low, 0
from bars
where high < low

union all

select 'negative_volume', symbol, minute_ts, volume, 0
from bars
where volume < 0

union all

select
    'implausible_price',
    b.symbol,
    b.minute_ts,
    case when b.low <= 0 or b.low < r.lower_bound then b.low else b.high end,
    case
        when b.low <= 0 then 0
        when b.low < r.lower_bound then r.lower_bound
        else r.upper_bound
    end
from bars as b
inner join day_ranges as r on b.symbol = r.symbol and b.trade_date = r.trade_date
where b.low <= 0 or b.low < r.lower_bound or b.high > r.upper_bound
"""


def find_anomalies(con: duckdb.DuckDBPyConnection, rules: AnomalyRules) -> pd.DataFrame:
    """The anomalies in `minute_bars` on `con`, one row each, sorted by time.

    Columns: anomaly_id, rule, check, severity, symbol, minute_ts (UTC), value, threshold.
    """
    con.execute("set timezone = 'UTC'")  # trading dates and minutes are UTC
    found = con.execute(
        ANOMALIES_SQL,
        {
            "window": rules.window_bars,
            "min_history": rules.min_history,
            "jump_z": rules.price_jump_z,
            "spike_ratio": rules.volume_spike_ratio,
            "stale_minutes": rules.stale_minutes,
            "price_ratio": rules.plausible_price_ratio,
        },
    ).df()
    found["minute_ts"] = pd.to_datetime(found["minute_ts"], utc=True)
    found = found.astype({"value": "float64", "threshold": "float64"})
    found = found.sort_values(["minute_ts", "rule", "symbol"], ignore_index=True)
    found.insert(1, "check", found["rule"].map(CHECK))
    found.insert(2, "severity", found["rule"].map(SEVERITY))
    found.insert(
        0,
        "anomaly_id",
        found["rule"]
        + ":"
        + found["symbol"]
        + ":"
        + found["minute_ts"].dt.strftime("%Y-%m-%dT%H:%MZ"),
    )
    return found
