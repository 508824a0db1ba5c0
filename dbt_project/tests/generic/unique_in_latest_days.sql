{% test unique_in_latest_days(model, column_name, date_column, days) %}
-- Uniqueness over the latest `days` + 1 days of `date_column`, where incremental runs write: the
-- test costs what a micro-batch costs, not what the history does. Older rows change only on a
-- full refresh, which rebuilds them with the same de-duplicating SQL.
select {{ column_name }}, count(*) as occurrences
from {{ model }}
where {{ date_column }} >= (select max({{ date_column }}) - {{ days }} from {{ model }})
group by {{ column_name }}
having count(*) > 1
{% endtest %}
