{% macro lake_root() %}
    {#- The lake's s3:// root, as configured once on the `lake` source in __sources.yml. -#}
    {%- for node in graph.sources.values() if node.source_name == 'lake' -%}
        {{- return(node.config.lake_root) -}}
    {%- endfor -%}
{% endmacro %}

{% macro asks_the_lake() %}
    {#- Only runs and builds ask the lake: parsing has no connection, and compile, docs and lint
        show the SQL that reads the files, offline. -#}
    {{- return(execute and flags.WHICH in ('run', 'build')) -}}
{% endmacro %}

{% macro lake_has_files(relative_glob) %}
    {#- True when the lake holds at least one object matching `relative_glob` under lake_root().
        read_parquet() errors on a glob that matches nothing, so models reading a lake prefix
        that may still be empty check first. True without asking when not asks_the_lake(). -#}
    {%- if not asks_the_lake() -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set found = run_query(
        "select count(*) from glob(" ~ sql_string(lake_root() ~ relative_glob) ~ ")"
    ) -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{% endmacro %}

{% macro sql_string(value) %}
    {#- `value` as a SQL string literal, quotes doubled. -#}
    {{- return("'" ~ value | replace("'", "''") ~ "'") -}}
{% endmacro %}

{% macro loaded_watermark(relation) %}
    {#- The newest `loaded_at` an incremental model has processed; rows of its input loaded
        later are new to it. -infinity while it is still empty. -#}
    coalesce((select max(loaded_at) from {{ relation }}), timestamptz '-infinity')
{% endmacro %}
