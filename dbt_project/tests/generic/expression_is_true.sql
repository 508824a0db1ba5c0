{% test expression_is_true(model, expression, column_name=none) %}
-- Rows where a business rule does not hold; the test fails if there is any.
select * from {{ model }} where not coalesce({{ expression }}, false)
{% endtest %}
