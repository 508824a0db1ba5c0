{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'minute_ts'],
        on_schema_change='fail',
        pre_hook="{{ delete_removed(['symbol', 'minute_ts']) }}",
    )
}}

-- depends_on: {{ ref('stg_lake__tick_exclusions') }}

with

-- Read in place by each CTE below: DuckDB would otherwise copy a CTE used twice, whole.
ticks as not materialized (

    select * from {{ ref('stg_lake__ticks') }}

),

{% if is_incremental() -%}
touched_minutes as (

    -- The bars that ticks loaded since this model last ran fall into, late ticks included, and
    -- those that excluded ticks were taken out of.
    select
        symbol,
        minute_ts
    from ticks
    where loaded_at > {{ loaded_watermark(this) }}
    union
    select
        symbol,
        minute_ts
    from ({{ removed_ticks(this) }}) as removed

),

{% endif -%}
bar_ticks as (

    select ticks.*
    from ticks
    {% if is_incremental() -%}
    semi join touched_minutes using (symbol, minute_ts)
    {%- endif %}

),

final as (

    select
        symbol,
        minute_ts,
        any_value(trade_date) as trade_date,
        -- (ts, event_id) orders ticks with the same time deterministically.
        arg_min(price, (ts, event_id)) as open,
        max(price) as high,
        min(price) as low,
        arg_max(price, (ts, event_id)) as close,
        -- A sum of BIGINTs is a HUGEINT, which pandas reads as a float.
        cast(sum(volume) as bigint) as volume,
        sum(price * volume) / nullif(sum(volume), 0) as vwap,
        count(*) as trade_count,
        max(ts) as last_ts,
        max(loaded_at) as loaded_at
    from bar_ticks
    group by symbol, minute_ts

)

-- Stored in time order: zone maps then let incremental runs and tests skip old row groups.
select * from final
order by minute_ts
