{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'trade_date'],
        on_schema_change='fail',
        pre_hook="{{ delete_removed(['symbol', 'trade_date']) }}",
    )
}}

-- depends_on: {{ ref('stg_lake__tick_exclusions') }}
-- After the rules' verdict: dbt skips this model while a no_anomalies test on minute_bars fails.
-- depends_on: {{ ref('minute_bar_anomalies') }}

with

-- Read in place by each CTE below: DuckDB would otherwise copy a CTE used twice, whole.
bars as not materialized (

    select * from {{ ref('minute_bars') }}

),

{% if is_incremental() -%}
changed as (

    -- Per symbol, the earliest day with a bar rewritten or removed since this model last ran. It
    -- and every later day are recomputed: a changed close moves the next day's return.
    select
        symbol,
        min(trade_date) as first_changed
    from (
        select
            symbol,
            trade_date
        from bars
        where loaded_at > {{ loaded_watermark(this) }}
        union all
        select
            symbol,
            trade_date
        from ({{ removed_ticks(this) }}) as removed
    ) as changes
    group by symbol

),

previous_close as (

    -- The close of the last day kept as it is, for the first recomputed day's return.
    select
        this.symbol,
        arg_max(this.close, this.trade_date) as close
    from {{ this }} as this
    inner join changed
        on this.symbol = changed.symbol and this.trade_date < changed.first_changed
    group by this.symbol

),

in_scope as (

    select bars.*
    from bars
    inner join changed
        on bars.symbol = changed.symbol and bars.trade_date >= changed.first_changed

),

{% else -%}
in_scope as (

    select * from bars

),

previous_close as (

    -- A full build starts each symbol at its first day: no close before it.
    select
        symbol,
        close
    from bars
    where false

),

{% endif -%}

minute_returns as (

    select
        *,
        ln(close / lag(close) over (partition by symbol, trade_date order by minute_ts))
            as log_return
    from in_scope

),

days as (

    select
        symbol,
        trade_date,
        arg_min(open, minute_ts) as open,
        max(high) as high,
        min(low) as low,
        arg_max(close, minute_ts) as close,
        -- A sum of BIGINTs is a HUGEINT, which pandas reads as a float.
        cast(sum(volume) as bigint) as volume,
        sum(vwap * volume) / nullif(sum(volume), 0) as vwap,
        cast(sum(trade_count) as bigint) as trade_count,
        -- Realised volatility of the day: root of the summed squared one-minute log returns.
        sqrt(sum(log_return * log_return)) as realized_vol,
        max(last_ts) as last_ts,
        max(loaded_at) as loaded_at
    from minute_returns
    group by symbol, trade_date

),

with_previous as (

    select
        days.*,
        coalesce(
            lag(days.close) over (partition by days.symbol order by days.trade_date),
            previous_close.close
        ) as prev_close
    from days
    left join previous_close on days.symbol = previous_close.symbol

),

final as (

    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        vwap,
        volume,
        trade_count,
        prev_close,
        realized_vol,
        last_ts,
        loaded_at,
        close / prev_close - 1 as daily_return
    from with_previous

)

select * from final
