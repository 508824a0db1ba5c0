{% macro removed_ticks(relation) %}
    {#- The ticks that exclusions took out of staging since `relation`, an incremental model built
        on staging, last processed its input (docs/architecture.md, "Excluding ticks"): event_id,
        symbol, ts, minute_ts and trade_date of each. A tick excluded before it was loaded never
        reached staging (its symbol is null here) and changes nothing. -#}
    select
        event_id,
        symbol,
        ts,
        minute_ts,
        trade_date
    from {{ ref('stg_lake__tick_exclusions') }}
    where symbol is not null and loaded_at > {{ loaded_watermark(relation) }}
{% endmacro %}

{% macro delete_removed(keys) %}
    {#- Pre-hook of the incremental models on staging: delete their rows at `keys` that removed
        ticks fall into. delete+insert replaces only the rows a build produces, and a bar or day
        whose every tick is excluded produces none; the model's select recomputes the others from
        the ticks left. No statement at all when nothing was removed, the usual case. -#}
    {%- if not (execute and is_incremental()) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set removed = run_query('select count(*) from (' ~ removed_ticks(this) ~ ')') -%}
    {%- if removed.columns[0].values()[0] == 0 -%}
        {{ return('') }}
    {%- endif -%}
    delete from {{ this }} as target
    using ({{ removed_ticks(this) }}) as removed
    where
        {%- for key in keys %}
        target.{{ key }} = removed.{{ key }}{{ ' and' if not loop.last }}
        {%- endfor %}
{% endmacro %}
