{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'minute_ts'],
        on_schema_change='fail',
        pre_hook="{{ delete_removed(['symbol', 'minute_ts']) }}",
    )
}}

{#- The longest window, in bars; a recomputed bar needs this many bars before it, less one. -#}
{%- set longest = 50 -%}

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

    -- Per symbol, the earliest bar rewritten or removed since this model last ran. It and every
    -- later bar are recomputed: their windows, and their positions if a late tick added a bar
    -- or an exclusion removed one, may move.
    select
        symbol,
        min(minute_ts) as first_changed
    from (
        select
            symbol,
            minute_ts
        from bars
        where loaded_at > {{ loaded_watermark(this) }}
        union all
        select
            symbol,
            minute_ts
        from ({{ removed_ticks(this) }}) as removed
    ) as changes
    group by symbol

),

last_kept as (

    select
        this.symbol,
        max(this.bar_number) as bar_number
    from {{ this }} as this
    inner join changed
        on this.symbol = changed.symbol and this.minute_ts < changed.first_changed
    group by this.symbol

),

window_start as (

    -- The first of the bars kept as they are that the recomputed windows still reach.
    select
        this.symbol,
        this.minute_ts,
        this.bar_number
    from {{ this }} as this
    inner join last_kept
        on
            this.symbol = last_kept.symbol
            and this.bar_number = greatest(last_kept.bar_number - {{ longest - 2 }}, 1)

),

in_scope as (

    select
        bars.symbol,
        bars.minute_ts,
        bars.close,
        bars.loaded_at,
        changed.first_changed,
        coalesce(window_start.bar_number, 1) as first_bar_number
    from bars
    inner join changed on bars.symbol = changed.symbol
    left join window_start on bars.symbol = window_start.symbol
    where bars.minute_ts >= coalesce(window_start.minute_ts, changed.first_changed)

),

{% else -%}
in_scope as (

    select
        symbol,
        minute_ts,
        close,
        loaded_at,
        cast(null as timestamptz) as first_changed,
        1 as first_bar_number
    from bars

),

{% endif -%}

numbered as (

    select
        *,
        first_bar_number - 1 + row_number() over (
            partition by symbol order by minute_ts
        ) as bar_number
    from in_scope

),

windowed as (

    select
        symbol,
        minute_ts,
        first_changed,
        close,
        bar_number,
        loaded_at,
        avg(close) over last_5 as mean_5,
        avg(close) over last_20 as mean_20,
        stddev_pop(close) over last_20 as std_20,
        avg(close) over last_50 as mean_50
    from numbered
    window
        last_5 as (partition by symbol order by minute_ts rows between 4 preceding and current row),
        last_20 as (
            partition by symbol order by minute_ts rows between 19 preceding and current row
        ),
        last_50 as (
            partition by symbol order by minute_ts rows between 49 preceding and current row
        )

),

final as (

    -- An average is null until its window is full.
    select
        symbol,
        minute_ts,
        close,
        bar_number,
        loaded_at,
        case when bar_number >= 5 then mean_5 end as sma_5,
        case when bar_number >= 20 then mean_20 end as sma_20,
        case when bar_number >= 50 then mean_50 end as sma_50,
        case when bar_number >= 20 then mean_20 + 2 * std_20 end as bollinger_upper,
        case when bar_number >= 20 then mean_20 - 2 * std_20 end as bollinger_lower
    from windowed
    where first_changed is null or minute_ts >= first_changed

)

select * from final
