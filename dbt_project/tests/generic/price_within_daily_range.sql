{% test price_within_daily_range(model, ratio, days) %}
-- Bars of the latest `days` + 1 trade dates priced more than `ratio` times above or below their
-- symbol's median close that day: a bad print, not a market move. The `implausible_price` anomaly
-- rule (stock_pipeline/defs/quality) is the same rule with the same threshold, and alerts on each
-- such bar. Older days are not judged again: a bad print blocks the marts until it ages out of
-- the window, not for ever, and the test costs what a micro-batch costs.
{%- if not (ratio | float) > 1 %}
    {{ exceptions.raise_compiler_error(
        "price_within_daily_range: ratio must be a number above 1, got '" ~ ratio ~ "'"
    ) }}
{%- endif %}
with recent_bars as (

    select *
    from {{ model }}
    where trade_date >= (select max(trade_date) - {{ days }} from {{ model }})

),

day_ranges as (

    select
        symbol,
        trade_date,
        median(close) as median_close
    from recent_bars
    group by symbol, trade_date

)

select
    bars.symbol,
    bars.minute_ts,
    bars.low,
    bars.high,
    day_ranges.median_close
from recent_bars as bars
inner join day_ranges
    on bars.symbol = day_ranges.symbol and bars.trade_date = day_ranges.trade_date
where
    bars.low < day_ranges.median_close / {{ ratio | float }}
    or bars.high > day_ranges.median_close * {{ ratio | float }}
{% endtest %}
