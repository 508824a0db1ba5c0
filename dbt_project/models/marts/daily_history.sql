{#- Indicator conventions and formulas: daily_history.yml. -#}

with

bars as (

    select * from {{ ref('stg_lake__daily_bars') }}

),

numbered as (

    select
        *,
        row_number() over by_symbol as day_number,
        close - lag(close) over by_symbol as close_change
    from bars
    window by_symbol as (partition by symbol order by trade_date)

),

-- The exponential averages are recursive (each day's value is the previous one moved towards
-- today's input by alpha), so they are computed one trading day at a time per symbol, in the
-- same order of operations as pandas' ewm(adjust=False).
smoothed as (

    with recursive ewm as (

        select
            symbol,
            day_number,
            close as ema_12,
            close as ema_26,
            cast(null as double) as macd_signal,
            cast(null as double) as avg_gain,
            cast(null as double) as avg_loss
        from numbered
        where day_number = 1

        union all

        select
            symbol,
            day_number,
            ema_12,
            ema_26,
            -- The signal line starts with the first MACD line value, on day 26.
            case
                when day_number = 26 then ema_12 - ema_26
                when day_number > 26
                    then (1 - 2 / 10) * previous_signal + 2 / 10 * (ema_12 - ema_26)
            end as macd_signal,
            -- Gains and losses start on day 2, the first day with a change.
            coalesce((1 - 1 / 14) * previous_gain + 1 / 14 * gain, gain) as avg_gain,
            coalesce((1 - 1 / 14) * previous_loss + 1 / 14 * loss, loss) as avg_loss
        from (
            select
                today.symbol,
                today.day_number,
                (1 - 2 / 13) * ewm.ema_12 + 2 / 13 * today.close as ema_12,
                (1 - 2 / 27) * ewm.ema_26 + 2 / 27 * today.close as ema_26,
                greatest(today.close_change, 0) as gain,
                greatest(-today.close_change, 0) as loss,
                ewm.macd_signal as previous_signal,
                ewm.avg_gain as previous_gain,
                ewm.avg_loss as previous_loss
            from ewm
            inner join numbered as today
                on
                    ewm.symbol = today.symbol
                    and ewm.day_number + 1 = today.day_number
        ) as step

    )

    select * from ewm

),

windowed as (

    select
        numbered.*,
        smoothed.ema_12,
        smoothed.ema_26,
        smoothed.macd_signal,
        smoothed.avg_gain,
        smoothed.avg_loss,
        avg(numbered.close) over last_20 as sma_20,
        avg(numbered.close) over last_50 as sma_50,
        avg(numbered.close) over last_200 as sma_200,
        stddev_pop(numbered.close) over last_20 as stddev_20,
        max(numbered.high) over last_52_weeks as high_52w,
        min(numbered.low) over last_52_weeks as low_52w,
        lag(numbered.close) over by_symbol as previous_close
    from numbered
    inner join smoothed
        on
            numbered.symbol = smoothed.symbol
            and numbered.day_number = smoothed.day_number
    window
        by_symbol as (partition by numbered.symbol order by numbered.trade_date),
        last_20 as (by_symbol rows between 19 preceding and current row),
        last_50 as (by_symbol rows between 49 preceding and current row),
        last_200 as (by_symbol rows between 199 preceding and current row),
        last_52_weeks as (by_symbol range between interval 363 days preceding and current row)

),

final as (

    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        adj_close,
        volume,
        source,
        high_52w,
        low_52w,
        close / previous_close - 1 as daily_return,
        case when day_number >= 20 then sma_20 end as sma_20,
        case when day_number >= 50 then sma_50 end as sma_50,
        case when day_number >= 200 then sma_200 end as sma_200,
        case when day_number >= 12 then ema_12 end as ema_12,
        case when day_number >= 26 then ema_26 end as ema_26,
        case when day_number >= 26 then ema_12 - ema_26 end as macd_line,
        case when day_number >= 34 then macd_signal end as macd_signal,
        case when day_number >= 34 then ema_12 - ema_26 - macd_signal end as macd_histogram,
        case
            when day_number < 15 then null
            when avg_loss = 0 then 100
            else 100 - 100 / (1 + avg_gain / avg_loss)
        end as rsi_14,
        case when day_number >= 20 then sma_20 end as bollinger_middle,
        case when day_number >= 20 then sma_20 + 2 * stddev_20 end as bollinger_upper,
        case when day_number >= 20 then sma_20 - 2 * stddev_20 end as bollinger_lower
    from windowed

)

select * from final
