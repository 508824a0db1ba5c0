{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
    )
}}

{#-
    `stock-pipeline exclude` writes one object per call under the lake's exclusions/ticks/ and
    never rewrites it (docs/architecture.md, "Excluding ticks"). A build lists that prefix and
    reads only the objects it has not loaded yet: none, almost always. Compile, docs and lint
    show the SQL that reads them all.

    Each new exclusion records the tick as staging holds it before this build removes it: its
    symbol and times tell the marts which bars and days to recompute. Staging is read by name,
    not ref(): it depends on this model, which reads the state the previous build left.
-#}
{%- set ticks = this.incorporate(path={'identifier': 'stg_lake__ticks'}) -%}
{%- set objects = none -%}
{%- set look_up_ticks = true -%}
{%- if asks_the_lake() -%}
    {%- set glob = lake_root() ~ 'exclusions/ticks/*.jsonl' -%}
    {%- set listing = 'select file from glob(' ~ sql_string(glob) ~ ')' -%}
    {%- if is_incremental() -%}
        {%- set listing = listing ~ ' where file not in (select source_object from '
            ~ this ~ ')' -%}
    {%- endif -%}
    {%- set objects = run_query(listing ~ ' order by file').columns[0].values() | list -%}
    {%- set staged = adapter.get_relation(ticks.database, ticks.schema, ticks.identifier) -%}
    {%- set look_up_ticks = objects and staged is not none -%}
{%- endif -%}

with

source as (

    {% if objects is none -%}
    select * from {{ source('lake', 'tick_exclusions') }}
    {%- elif objects -%}
    -- The same options as the source's.
    select * from read_json(
        [
            {%- for url in objects %}
            {{ sql_string(url) }}{{ ',' if not loop.last }}
            {%- endfor %}
        ],
        format = 'newline_delimited',
        columns = struct_pack(
            event_id := 'varchar', reason := 'varchar', excluded_at := 'timestamptz'
        ),
        filename = true
    )
    {%- else -%}
    -- Nothing new: an empty relation with the columns used below.
    select
        cast(null as varchar) as event_id,
        cast(null as varchar) as reason,
        cast(null as timestamptz) as excluded_at,
        cast(null as varchar) as filename  -- noqa: RF04
    where false
    {%- endif %}

),

renamed as (

    select
        event_id,
        reason,
        excluded_at,
        filename as source_object
    from source

),

{% if look_up_ticks -%}
staged_ticks as (

    -- Only the ticks named: staging is large, the new exclusions are few.
    select
        event_id,
        symbol,
        ts,
        trade_date,
        minute_ts
    from {{ ticks }}
    where event_id in (
        select renamed.event_id from renamed
    )

),

{% endif -%}
final as (

    select
        renamed.event_id,
        renamed.reason,
        renamed.excluded_at,
        renamed.source_object,
        {%- if look_up_ticks %}
        staged_ticks.symbol,
        staged_ticks.ts,
        staged_ticks.trade_date,
        staged_ticks.minute_ts,
        {%- else %}
        -- Nothing new, or no staging yet: no tick to look up.
        cast(null as varchar) as symbol,
        cast(null as timestamptz) as ts,
        cast(null as date) as trade_date,
        cast(null as timestamptz) as minute_ts,
        {%- endif %}
        current_timestamp as loaded_at
    from renamed
    {% if look_up_ticks -%}
    left join staged_ticks on renamed.event_id = staged_ticks.event_id
    {%- endif %}

)

select * from final
