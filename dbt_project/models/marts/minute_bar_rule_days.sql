{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['trade_date'],
        on_schema_change='fail',
        pre_hook="{{ delete_removed(['trade_date']) }}",
    )
}}

{#-
    The anomaly rules (docs/architecture.md, "Anomaly rules"), judged over whole UTC trade dates:
    windows never cross one, the stale-feed rule compares the symbols of a date and the
    implausible-price rule a symbol's date. One row per symbol and date, even without anomaly, so
    that the newest `loaded_at` judged is known when nothing was found.
-#}
{%- set window_bars = anomaly_threshold('anomaly_window_bars') -%}
{%- set min_history = anomaly_threshold('anomaly_min_history') -%}
{%- set jump_z = anomaly_threshold('anomaly_price_jump_z') -%}
{%- set spike_ratio = anomaly_threshold('anomaly_volume_spike_ratio') -%}
{%- set stale_minutes = anomaly_threshold('anomaly_stale_minutes') -%}
{%- set price_ratio = anomaly_threshold('anomaly_plausible_price_ratio') -%}
{%- set thresholds = [window_bars, min_history, jump_z, spike_ratio, stale_minutes, price_ratio]
    | join(' ') -%}

-- depends_on: {{ ref('stg_lake__tick_exclusions') }}

with

-- Read in place by each CTE below: DuckDB would otherwise copy a CTE used twice, whole.
all_bars as not materialized (

    select * from {{ ref('minute_bars') }}

),

{% if is_incremental() -%}
changed_days as (

    -- The dates with a bar rewritten or removed since this model last ran, and those judged
    -- with other thresholds, judged again whole.
    select trade_date
    from all_bars
    where loaded_at > {{ loaded_watermark(this) }}
    union
    select trade_date
    from ({{ removed_ticks(this) }}) as removed
    union
    select trade_date
    from {{ this }}
    where thresholds != {{ sql_string(thresholds) }}

),

bars as (

    select all_bars.*
    from all_bars
    semi join changed_days using (trade_date)

),

{% else -%}
bars as not materialized (

    select * from all_bars

),

{% endif -%}

returns as (

    select
        symbol,
        minute_ts,
        trade_date,
        volume,
        -- Scaled to one minute (a random walk's spread grows with the square root of time), so
        -- the first bar after a quiet stretch is not mistaken for a jump.
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
        rows between {{ window_bars }} preceding and 1 preceding
    )

),

flagged as (

    select
        *,
        coalesce(
            return_history >= {{ min_history }} and abs(return_z) > {{ jump_z }}, false
        ) as is_jump,
        coalesce(
            volume_history >= {{ min_history }} and volume_ratio > {{ spike_ratio }}, false
        ) as is_spike
    from scored

),

episodes as (

    -- A run of consecutive flagged minutes is one anomaly, named by its first minute.
    select
        *,
        lag(is_jump, 1, false) over by_minute as was_jump,
        lag(is_spike, 1, false) over by_minute as was_spike
    from flagged
    window by_minute as (partition by symbol, trade_date order by minute_ts)

),

live_minutes as (

    select distinct
        trade_date,
        minute_ts
    from bars

),

symbol_days as (

    select
        symbol,
        trade_date,
        count(*) as bars,
        max(loaded_at) as loaded_at,
        median(close) * {{ price_ratio }} as upper_bound,
        median(close) / {{ price_ratio }} as lower_bound
    from bars
    group by symbol, trade_date

),

presence as (

    select
        sd.symbol,
        live.trade_date,
        live.minute_ts,
        bars.symbol is not null as present
    from live_minutes as live
    inner join symbol_days as sd on live.trade_date = sd.trade_date
    left join bars on sd.symbol = bars.symbol and live.minute_ts = bars.minute_ts

),

quiet as (

    -- Minutes others traded and this symbol did not, numbered by the bars seen before them: one
    -- number per quiet stretch.
    select
        symbol,
        trade_date,
        minute_ts,
        present,
        sum(cast(present as int)) over (
            partition by symbol, trade_date order by minute_ts rows unbounded preceding
        ) as stretch
    from presence

),

found as (

    select
        'price_jump' as rule,
        symbol,
        trade_date,
        minute_ts,
        return_z as value,
        {{ jump_z }} as threshold
    from episodes
    where is_jump and not was_jump

    union all

    select
        'volume_spike' as rule,
        symbol,
        trade_date,
        minute_ts,
        volume_ratio as value,
        {{ spike_ratio }} as threshold
    from episodes
    where is_spike and not was_spike

    union all

    select
        'stale_feed' as rule,
        symbol,
        trade_date,
        min(minute_ts) as minute_ts,
        count(*) as value,
        {{ stale_minutes }} as threshold
    from quiet
    where not present
    group by symbol, trade_date, stretch
    having count(*) >= {{ stale_minutes }}

    union all

    select
        'high_below_low' as rule,
        symbol,
        trade_date,
        minute_ts,
        high - low as value,
        0 as threshold
    from bars
    where high < low

    union all

    select
        'negative_volume' as rule,
        symbol,
        trade_date,
        minute_ts,
        volume as value,
        0 as threshold
    from bars
    where volume < 0

    union all

    select
        'implausible_price' as rule,
        bars.symbol,
        bars.trade_date,
        bars.minute_ts,
        case
            when bars.low <= 0 or bars.low < sd.lower_bound then bars.low else bars.high
        end as value,
        case
            when bars.low <= 0 then 0
            when bars.low < sd.lower_bound then sd.lower_bound
            else sd.upper_bound
        end as threshold
    from bars
    inner join symbol_days as sd
        on bars.symbol = sd.symbol and bars.trade_date = sd.trade_date
    where
        bars.low <= 0
        or bars.low < sd.lower_bound
        or bars.high > sd.upper_bound

),

final as (

    select
        sd.symbol,
        sd.trade_date,
        sd.bars,
        sd.loaded_at,
        {{ sql_string(thresholds) }} as thresholds,
        coalesce(
            list(
                {
                    'rule': found.rule,
                    'minute_ts': found.minute_ts,
                    'value': cast(found.value as double),
                    'threshold': cast(found.threshold as double)
                }
                order by found.minute_ts, found.rule
            ) filter (where found.rule is not null),
            []
        ) as anomalies
    from symbol_days as sd
    left join found on sd.symbol = found.symbol and sd.trade_date = found.trade_date
    group by sd.symbol, sd.trade_date, sd.bars, sd.loaded_at

)

select * from final
order by trade_date
