{% macro anomaly_threshold(name) %}
    {#- Threshold `name` of the anomaly rules, as a number: the dbt var when a run passes it (the
        Dagster step does for a run's config), else the environment variable of that name in
        upper case, which stock_pipeline/settings.py declares once, with its default and bounds. -#}
    {%- set value = var(name, env_var(name | upper)) -%}
    {%- set number = value | float(none) -%}
    {%- if number is none -%}
        {{ exceptions.raise_compiler_error(name ~ " must be a number, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return(number | int if number == number | int else number) -}}
{% endmacro %}
