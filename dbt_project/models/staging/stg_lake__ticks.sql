{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
    )
}}

{#-
    Incremental runs read the files that S3 lists as written since the previous run began to
    list (its `loaded_at`), less `listing_margin_minutes`, in the lake partitions from
    `late_tick_days` before the newest loaded trade date through tomorrow (UTC; or the day after
    the newest loaded one, if later). A partition gains a file per shard every micro-batch,
    thousands a day: choosing from the listing costs no request per file, and no file is opened
    twice but for the margin. Files that ingest runs land out of order are read once listed; what
    the margin re-reads is dropped by event_id below.
-#}
{%- set tick_files = 'raw/ticks/dt=*/shard=*/*.parquet' -%}
{%- set listed_after, listing_started, new_files = none, none, none -%}
{%- if is_incremental() and execute -%}
    {%- set watermark_query -%}
        select
            cast(max(loaded_at) - interval {{ var('listing_margin_minutes') | int }} minute
                as varchar),
            cast(now() as varchar),
            array_to_string(list_transform(generate_series(
                cast(max(trade_date) - {{ var('late_tick_days') | int }} as timestamp),
                cast(greatest(max(trade_date), cast(now() at time zone 'UTC' as date)) + 1
                    as timestamp),
                interval 1 day
            ), day -> strftime(day, '%Y-%m-%d')), ',')
        from {{ this }}
    {%- endset -%}
    {%- set listed_after, listing_started, days = run_query(watermark_query).rows[0] -%}
{%- endif -%}
{%- if listed_after -%}
    {%- set days, partitions = days.split(','), [] -%}
    {%- for day in days -%}
        {%- do partitions.append(tick_files | replace('dt=*', 'dt=' ~ day)) -%}
    {%- endfor -%}
    {%- set new_files = lake_files_written_after(partitions, listed_after) -%}
{%- endif -%}
{%- set nothing_to_read = (
    not new_files if new_files is not none else not lake_has_files(tick_files)
) -%}

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
    {%- elif new_files is not none %}
    select * from read_parquet(
        [
            {%- for file in new_files %}
            {{ sql_string(file) }}{{ ',' if not loop.last }}
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
        -- time_bucket: date_trunc on a timestamptz goes through the time zone calendar, 4x slower.
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
        {% if new_files -%}
        -- The files this run did not list landed after its listing began: the next run lists
        -- from here.
        timestamptz '{{ listing_started }}' as loaded_at
        {%- else -%}
        current_timestamp as loaded_at
        {%- endif %}
    from deduplicated
    {% if new_files -%}
    -- A re-sent tick has the same event time, hence the same trade_date as its first copy.
    anti join (
        select event_id from {{ this }}
        where trade_date >= date '{{ days[0] }}'
    ) as already_loaded using (event_id)
    {%- endif %}

)

-- Stored in event-time order: zone maps then let incremental runs and tests skip old row groups.
select * from final
order by ts
