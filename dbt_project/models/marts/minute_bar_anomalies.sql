{{ config(materialized='view') }}

with

days as (

    select * from {{ ref('minute_bar_rule_days') }}

),

anomalies as (

    select
        symbol,
        trade_date,
        unnest(anomalies) as anomaly
    from days

),

final as (

    select
        unnested.symbol,
        unnested.trade_date,
        unnested.anomaly['rule'] as rule,
        unnested.anomaly['minute_ts'] as minute_ts,
        unnested.anomaly['value'] as value,
        unnested.anomaly['threshold'] as threshold,
        -- The stable identity the alert ledger keys on: rule, symbol and first minute (UTC).
        unnested.anomaly['rule'] || ':' || unnested.symbol || ':'
        || strftime(unnested.anomaly['minute_ts'] at time zone 'UTC', '%Y-%m-%dT%H:%MZ')
            as anomaly_id
    from anomalies as unnested

)

select * from final
