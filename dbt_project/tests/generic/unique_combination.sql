{% test unique_combination(model, columns) %}
-- Grain test: each combination of `columns` appears at most once.
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
