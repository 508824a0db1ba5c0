{% macro publish_build(results) %}
    {#- On run end: when this build brought the warehouse to a complete state, record it in
        `warehouse_builds` in a commit of its own, marked 'build complete'. Readers pin that
        snapshot (stock_pipeline.resources.warehouse.connect), so they never see a build half
        done. Complete: nothing failed, errored or was skipped, and every model downstream of one
        that ran also ran. Returns no SQL otherwise. -#}
    {%- if not (execute and flags.WHICH in ('run', 'build')) -%}
        {{ return('') }}
    {%- endif -%}
    {%- set built = [] -%}
    {%- for result in results -%}
        {%- if result.status not in ('success', 'pass', 'warn') -%}
            {{ return('') }}
        {%- endif -%}
        {%- if result.node.resource_type == 'model' -%}
            {%- do built.append(result.node.unique_id) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.unique_id not in built -%}
        {%- for parent in node.depends_on.nodes if parent in built -%}
            {{ return('') }}
        {%- endfor -%}
    {%- endfor -%}
    {%- if not built -%}
        {{ return('') }}
    {%- endif -%}
    {%- set builds = target.database ~ '.main.warehouse_builds' -%}
    create table if not exists {{ builds }} (
        invocation_id varchar,
        built_at timestamptz,
        models integer
    );
    begin transaction;
    insert into {{ builds }}
    values ({{ sql_string(invocation_id) }}, current_timestamp, {{ built | length }});
    call {{ target.database }}.set_commit_message('dbt', 'build complete');
    commit;
{% endmacro %}
