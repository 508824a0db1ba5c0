{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_removed(['trade_date', 'event_id']) }}",
    )
}}

{#-
    Incremental runs read exactly the lake objects that LAKE_OBJECTS lists (a JSON array of s3://
    URLs): the Dagster step that builds these models passes what the raw_ticks runs wrote since
    the last build that loaded (docs/architecture.md, "Exactly-once"). An environment variable,
    not a dbt var: a changed var makes dbt parse the whole project again, a changed variable only
    the files that read it. Without it (dbt run by hand) they read the whole lake, as a full
    refresh does. Ticks already loaded are skipped by event_id either way, and so are excluded
    ticks; the pre-hook deletes those that were loaded before their exclusion.
-#}
{%- set lake_objects = fromjson(env_var('LAKE_OBJECTS', 'null')) if is_incremental() else none -%}
{%- set days = [] -%}
{%- for url in lake_objects or [] -%}
    {%- set day = url.split('/dt=')[1][:10] -%}
    {%- if day not in days -%}{%- do days.append(day) -%}{%- endif -%}
{%- endfor -%}
{%- set nothing_to_read = (not lake_objects) if lake_objects is not none
    else not lake_has_files('raw/ticks/dt=*/shard=*/*.parquet') -%}

with

source as (

    {% if nothing_to_read -%}
    -- No tick file yet, or none new: an empty relation with the lake columns used below.
    select
        cast(null as varchar) as event_id,
        cast(null as varchar) as symbol,
        cast(null as timestamptz) as ts,
        cast(null as double) as price,
        cast(null as bigint) as volume,
        cast(null as double) as bid,
        cast(null as double) as ask,
        cast(null as varchar) as source,
        cast(null as timestamptz) as arrival_ts,
        cast(null as timestamptz) as ingested_at,
        cast(null as date) as dt
    where false
    {%- elif lake_objects is not none %}
    select * from read_parquet(
        [
            {%- for url in lake_objects %}
            {{ sql_string(url) }}{{ ',' if not loop.last }}
            {%- endfor %}
        ],
        hive_partitioning = true
    )
    {%- else %}
    select * from {{ source('lake', 'raw_ticks') }}
    {%- endif %}

),

renamed as (

    select
        event_id,
        symbol,
        ts,
        dt as trade_date,
        price,
        volume,
        bid,
        ask,
        source,
        arrival_ts,
        ingested_at,
        -- time_bucket: date_trunc on a timestamptz goes through the time zone calendar.
        time_bucket(interval '1 minute', ts) as minute_ts
    from source

),

deduplicated as (

    -- At-least-once delivery becomes exactly-once here: one row per event_id, the first ingested.
    -- Copies that tie on both times are identical in every column kept.
    select * from renamed
    qualify row_number() over (
        partition by event_id
        order by ingested_at, arrival_ts
    ) = 1

),

final as (

    select
        deduplicated.*,
        current_timestamp as loaded_at
    from deduplicated
    -- Excluded ticks stay out, also a copy re-sent after its exclusion.
    anti join {{ ref('stg_lake__tick_exclusions') }} as excluded
        on deduplicated.event_id = excluded.event_id
    {% if is_incremental() and not nothing_to_read -%}
    -- A re-sent tick has the same event time, hence the same trade_date, as its first copy.
    anti join (
        select event_id from {{ this }}
        {%- if days %}
        where trade_date in (
            {%- for day in days %}
            date {{ sql_string(day) }}{{ ',' if not loop.last }}
            {%- endfor %}
        )
        {%- endif %}
    ) as already_loaded using (event_id)
    {%- endif %}

)

-- Stored in event-time order: file statistics then let incremental runs skip old files.
select * from final
order by ts
