"""The API's queries on the warehouse. Values are bound as parameters, never formatted in.

Each returns an Arrow table, typed as the marts are: JSON, CSV and Parquet are rendered from it.
"""

from datetime import datetime

import duckdb
import pyarrow as pa

from stock_pipeline.resources.warehouse import ALIAS
from stock_pipeline.serve.snapshot import Pinned, SymbolSpan

MARTS = ("minute_bars", "moving_averages", "daily_prices", "latest_quotes", "daily_history")

QUOTE_COLUMNS = """
    symbol,
    last_price,
    last_ts,
    prev_close,
    change,
    relative_change,
    sma_20,
    updated_at
"""

MINUTE_BARS = """
    select
        bars.minute_ts as ts,
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        cast(bars.volume as bigint) as volume,
        bars.vwap,
        cast(bars.trade_count as bigint) as trade_count,
        averages.sma_5,
        averages.sma_20,
        averages.sma_50,
        averages.bollinger_upper,
        averages.bollinger_lower
    from minute_bars as bars
    left join moving_averages as averages
        on averages.symbol = bars.symbol and averages.minute_ts = bars.minute_ts
    where bars.symbol = $symbol {conditions}
    order by bars.minute_ts
    limit $limit
"""

# A daily bar's time is midnight of its trading day in New York, as market data APIs give it.
DAILY_TS = "timezone('America/New_York', cast(trade_date as timestamp))"
DAILY_BARS = f"""
    select
        {DAILY_TS} as ts,
        trade_date,
        open,
        high,
        low,
        close,
        adj_close,
        cast(volume as bigint) as volume,
        daily_return,
        sma_20,
        sma_50,
        sma_200,
        ema_12,
        ema_26,
        macd_line,
        macd_signal,
        macd_histogram,
        rsi_14,
        bollinger_middle,
        bollinger_upper,
        bollinger_lower,
        high_52w,
        low_52w
    from daily_history
    where symbol = $symbol {{conditions}}
    order by trade_date
    limit $limit
"""
TIMEFRAMES = {
    "1Min": ("minute_bars", "bars.minute_ts", MINUTE_BARS),
    "1Day": ("daily_history", DAILY_TS, DAILY_BARS),
}


def symbols(spans_by_symbol: dict[str, SymbolSpan]) -> pa.Table:
    spans = list(spans_by_symbol.values())
    return pa.table(
        {
            "symbol": pa.array([s.symbol for s in spans], pa.string()),
            "first_tick_ts": pa.array([s.first_tick_ts for s in spans], pa.timestamp("us", "UTC")),
            "last_tick_ts": pa.array([s.last_tick_ts for s in spans], pa.timestamp("us", "UTC")),
            "first_trade_date": pa.array([s.first_trade_date for s in spans], pa.date32()),
            "last_trade_date": pa.array([s.last_trade_date for s in spans], pa.date32()),
        }
    )


def latest_quotes(cursor: duckdb.DuckDBPyConnection, pinned: Pinned) -> pa.Table | None:
    """Every latest_quotes row, by symbol; None without the mart."""
    if "latest_quotes" not in pinned.tables():
        return None
    sql = f"select {QUOTE_COLUMNS} from latest_quotes order by symbol"
    return cursor.execute(sql).fetch_arrow_table()


def bars(
    cursor: duckdb.DuckDBPyConnection,
    pinned: Pinned,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    after: datetime | None,
    limit: int,
) -> pa.Table | None:
    """Bars in [start, end) after `after`, oldest first, at most `limit`; None without the mart."""
    table, ts, sql = TIMEFRAMES[timeframe]
    if table not in pinned.tables():
        return None
    bounds = {"start": (">=", start), "end": ("<", end), "after": (">", after)}
    conditions = "".join(f" and {ts} {op} ${name}" for name, (op, value) in bounds.items() if value)
    params = {name: value for name, (_, value) in bounds.items() if value}
    return cursor.execute(
        sql.format(conditions=conditions), {"symbol": symbol, "limit": limit, **params}
    ).fetch_arrow_table()


# The snapshot changes that write a table's rows, and those that name a table they create.
ROW_CHANGES = ("tables_inserted_into", "tables_deleted_from", "inlined_insert", "inlined_delete")
MART_BUILDS = f"""
    with entries as (
        select snapshot_id, snapshot_time, unnest(map_entries(changes)) as entry
        from {ALIAS}.snapshots()
        where snapshot_id <= $snapshot_id
    ),

    changes as (
        select snapshot_id, snapshot_time, entry.key as kind, unnest(entry.value) as target
        from entries
    )

    select tables.table_name, max(changes.snapshot_time) as changed_at
    from changes
    inner join __ducklake_metadata_{ALIAS}.ducklake_table as tables
        on (
            changes.kind in {ROW_CHANGES}
            and try_cast(changes.target as bigint) = tables.table_id
            and tables.begin_snapshot <= changes.snapshot_id
            and (tables.end_snapshot is null or changes.snapshot_id < tables.end_snapshot)
        ) or (
            changes.kind = 'tables_created'
            and changes.target = 'main.' || tables.table_name
            and tables.begin_snapshot = changes.snapshot_id
        )
    where list_contains($marts, tables.table_name)
    group by tables.table_name
"""


def mart_builds(cursor: duckdb.DuckDBPyConnection, pinned: Pinned) -> dict[str, datetime | None]:
    """When a commit up to this build last changed each mart (DuckLake's snapshot log)."""
    rows = cursor.execute(
        MART_BUILDS, {"snapshot_id": pinned.snapshot.snapshot_id, "marts": list(MARTS)}
    ).fetchall()
    return {**dict.fromkeys(MARTS), **dict(rows)}
