with

latest_days as (

    select * from {{ ref('daily_prices') }}
    qualify row_number() over (partition by symbol order by trade_date desc) = 1

),

latest_averages as (

    -- The moving averages of each symbol's last bar, the one its last tick fell into.
    select
        averages.symbol,
        averages.sma_20
    from {{ ref('moving_averages') }} as averages
    inner join latest_days
        on
            averages.symbol = latest_days.symbol
            and averages.minute_ts = time_bucket(interval '1 minute', latest_days.last_ts)

),

final as (

    select
        latest_days.symbol,
        latest_days.close as last_price,
        latest_days.last_ts,
        latest_days.prev_close,
        latest_averages.sma_20,
        latest_days.loaded_at as updated_at,
        latest_days.daily_return as relative_change,
        latest_days.close - latest_days.prev_close as change
    from latest_days
    left join latest_averages on latest_days.symbol = latest_averages.symbol

)

select * from final
