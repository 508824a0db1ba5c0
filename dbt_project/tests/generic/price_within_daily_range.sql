{% test price_within_daily_range(model, ratio) %}
-- Bars priced more than `ratio` times above or below their symbol's median close that day: a bad
-- print, not a market move. The `implausible_price` anomaly rule (stock_pipeline/defs/quality)
-- is the same test with the same threshold, and alerts on each such bar.
with day_ranges as (

    select
        symbol,
        trade_date,
        median(close) as median_close
    from {{ model }}
    group by symbol, trade_date

)

select
    bars.symbol,
    bars.minute_ts,
    bars.low,
    bars.high,
    day_ranges.median_close
from {{ model }} as bars
inner join day_ranges
    on bars.symbol = day_ranges.symbol and bars.trade_date = day_ranges.trade_date
where
    bars.low < day_ranges.median_close / {{ ratio | float }}
    or bars.high > day_ranges.median_close * {{ ratio | float }}
{% endtest %}
