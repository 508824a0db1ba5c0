{% test no_anomalies(model, anomalies, rule, days) %}
-- The anomalies of `rule` (a relation listing them, minute_bar_anomalies) on the latest `days` +
-- 1 trade dates of `model`. An ERROR test that reads the rules instead of restating them: dbt
-- skips the models downstream of both `model` and `anomalies` when it fails. Older days are not
-- judged again: a bad print blocks them until it ages out of the window, not for ever, and the
-- test costs what a micro-batch costs.
select *
from {{ anomalies }}
where
    rule = {{ sql_string(rule) }}
    and trade_date >= (select max(trade_date) - {{ days }} from {{ model }})
{% endtest %}
