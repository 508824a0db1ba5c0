{#- read_parquet() errors on a glob that matches nothing: before the first daily_bars run the
    view is an empty relation with the lake's columns, and the next build picks the files up. -#}
{%- set lake_is_empty = not lake_has_files('raw/daily_bars/dt=*/daily_bars.parquet') -%}

with

source as (

    {% if lake_is_empty %}
    select
        cast(null as varchar) as symbol,
        cast(null as date) as date,  -- noqa: RF04
        cast(null as double) as open,
        cast(null as double) as high,
        cast(null as double) as low,
        cast(null as double) as close,  -- noqa: RF04
        cast(null as double) as adj_close,
        cast(null as bigint) as volume,
        cast(null as varchar) as source,  -- noqa: RF04
        cast(null as date) as dt
    where false
    {% else %}
    select * from {{ source('lake', 'daily_bars') }}
    {% endif %}

),

renamed as (

    select
        symbol,
        date as trade_date,
        open,
        high,
        low,
        close,
        adj_close,
        volume,
        source
    from source

)

select * from renamed
