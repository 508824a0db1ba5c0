"""`daily_bars`: official daily bars per NYSE trading day in the lake; its job and schedule."""

import io
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stock_pipeline.csv_files import UnreadableCsvError
from stock_pipeline.resources.aws import LakeResource
from stock_pipeline.resources.market_data import (
    DAILY_BARS_COLUMNS,
    DAILY_BARS_SCHEMA,
    EXCHANGE_TZ,
    MarketDataResource,
    history_start,
    trading_sessions,
)
from stock_pipeline.settings import get_settings

# Weekdays in New York time. Exchange holidays stay partitions and materialise as empty files;
# end_offset=1 makes today's partition available to the evening schedule.
trading_days = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    fmt="%Y-%m-%d",
    start=history_start().isoformat(),
    timezone=EXCHANGE_TZ,
    end_offset=1,
)


def daily_bars_key(lake: LakeResource, day: date) -> str:
    return lake.key("raw/daily_bars", f"dt={day.isoformat()}", "daily_bars.parquet")


def _parquet(bars: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(bars, schema=DAILY_BARS_SCHEMA, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


@dg.asset(
    partitions_def=trading_days,
    # A backfill over years is one run and one multi-day download, not one per day.
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="history",
    kinds={"s3", "parquet"},
    description="Official daily OHLCV bars per symbol, one Parquet file per trading day under "
    "raw/daily_bars/dt=YYYY-MM-DD/ in the lake, from MARKET_DATA_SOURCE. Holidays are empty.",
)
def daily_bars(
    context: dg.AssetExecutionContext, market_data: MarketDataResource, lake: LakeResource
) -> dg.MaterializeResult:
    started = time.monotonic()
    days = [date.fromisoformat(key) for key in context.partition_keys]
    sessions = trading_sessions(days[0], days[-1])
    # A session not closed yet has no official bar: its file stays empty until a later run.
    closed = trading_sessions(days[0], days[-1], closed_by=datetime.now(UTC))
    if closed:
        try:
            bars, empty_symbols = market_data.daily_bars(
                get_settings().symbols, closed[0], closed[-1]
            )
        except UnreadableCsvError as err:
            # The file needs fixing by a person: retrying the run cannot help.
            raise dg.Failure(str(err), allow_retries=False) from None
    else:
        bars, empty_symbols = pd.DataFrame(columns=DAILY_BARS_COLUMNS), []
    by_day = dict(tuple(bars.groupby("date")))
    no_bars = bars.iloc[:0]

    is_session, is_closed = set(sessions), set(closed)
    s3 = lake.get_client()

    def write(day: date) -> tuple[int, int]:
        # Every partition gets its file (empty on a holiday), so re-running one replaces it exactly.
        day_bars = by_day.get(day, no_bars) if day in is_closed else no_bars
        body = _parquet(day_bars)
        s3.put_object(Bucket=lake.bucket, Key=daily_bars_key(lake, day), Body=body)
        return len(day_bars), len(body)

    # A backfill writes thousands of small objects: a few requests in flight hide the latency.
    with ThreadPoolExecutor(max_workers=8) as pool:
        written = list(pool.map(write, days))
    written_rows = sum(rows for rows, _ in written)
    written_bytes = sum(size for _, size in written)

    sessions_without_bars = [d.isoformat() for d in closed if d not in by_day]
    if empty_symbols:
        context.log.warning(f"{market_data.source}: no bars for {empty_symbols}")
    if sessions_without_bars:
        context.log.warning(f"{market_data.source}: no bars at all on {sessions_without_bars}")
    return dg.MaterializeResult(
        metadata={
            "source": market_data.source,
            "rows": written_rows,
            "partitions_written": len(days),
            "trading_sessions": len(sessions),
            "holidays": [d.isoformat() for d in days if d not in is_session],
            "sessions_not_closed": [d.isoformat() for d in sessions if d not in is_closed],
            "empty_symbols": empty_symbols,
            "sessions_without_bars": sessions_without_bars,
            "bytes": written_bytes,
            "seconds": round(time.monotonic() - started, 3),
        }
    )


daily_bars_job = dg.define_asset_job("daily_bars_job", selection=[daily_bars])


@dg.schedule(
    job=daily_bars_job,
    # After the 16:00 close, once the day's official bars are published.
    cron_schedule="30 18 * * 1-5",
    execution_timezone=EXCHANGE_TZ,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_bars_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.astimezone(ZoneInfo(EXCHANGE_TZ)).date()
    return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())
