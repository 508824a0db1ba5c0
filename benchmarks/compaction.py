"""Raw-lake compaction: a full refresh over micro-batch files, then over the compacted day.

In a fresh emulator and warehouse, writes TICKS ticks (100 symbols, ~500,000 a trading day, so
two closed days) in files of 100 ticks, what a day of `make dev` micro-batches leaves; then times
`dbt run --full-refresh` of the tick models (as dbt_full_refresh.py does), materialises the real
`raw_ticks_compaction` asset, and times the same full refresh again. Prints files and bytes before
and after, the compaction's own time, both refreshes and their ratio (the micro-batch files are
the baseline). Checks that the marts are the same before and after: exits non-zero if not.
Usage: python benchmarks/compaction.py [ticks (1,000,000)]
"""

import sys
import time
from datetime import timedelta

import dagster as dg
import pandas as pd
from dbt_benchlib import Lake, dbt, emulator

from stock_pipeline.defs.ingest import compaction
from stock_pipeline.resources.aws import LakeResource
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings

FILE_ROWS = 100
FULL_REFRESH = ("run", "--full-refresh", "--select", "stg_lake__tick_exclusions+")
# Each mart, its key and the column that says when a build wrote the row.
MARTS = {
    "daily_prices": ("symbol, trade_date", "loaded_at"),
    "minute_bars": ("symbol, minute_ts", "loaded_at"),
    "latest_quotes": ("symbol", "updated_at"),
}


def marts() -> dict[str, pd.DataFrame]:
    """Each mart's rows in key order, from the last complete build."""
    with connect() as con:
        return {
            table: con.execute(f"select * exclude ({written}) from {table} order by {keys}")
            .to_arrow_table()
            .to_pandas()
            for table, (keys, written) in MARTS.items()
        }


def differences(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> list[str]:
    """The marts that differ beyond float summation order (the files are read in another order)."""
    different = []
    for table in MARTS:
        try:
            pd.testing.assert_frame_equal(before[table], after[table], rtol=1e-9, atol=0)
        except AssertionError as err:
            different.append(f"{table}: {err}")
    return different


def compact() -> dict:
    settings = get_settings()
    lake = LakeResource(bucket=settings.lake_bucket, prefix=settings.lake_prefix)
    result = dg.materialize(
        [compaction.raw_ticks_compaction],
        resources={"lake": lake},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    [materialization] = result.asset_materializations_for_node("raw_ticks_compaction")
    return {name: value.value for name, value in materialization.metadata.items()}


def main() -> None:
    ticks = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with emulator():
        started = time.perf_counter()
        Lake(file_rows=FILE_ROWS).history(ticks)
        print(
            f"{ticks:,} ticks (100 symbols) written to the lake in files of {FILE_ROWS} in "
            f"{time.perf_counter() - started:.1f} s"
        )
        dbt("parse")  # as Dagster does when it loads the code; the timed runs reuse it
        small_files = dbt(*FULL_REFRESH)
        before = marts()

        # The files were written seconds ago; on a real lake they are a closed day's, hours old.
        compaction.SETTLE = timedelta(0)
        started = time.perf_counter()
        done = compact()
        compaction_seconds = time.perf_counter() - started
        compacted = dbt(*FULL_REFRESH)
        after = marts()

    print(
        f"compaction of {len(done['days_compacted'])} closed days: {done['files_before']:,} files, "
        f"{done['bytes_before'] / 1e6:.1f} MB -> {done['files_after']:,} files, "
        f"{done['bytes_after'] / 1e6:.1f} MB, in {compaction_seconds:.1f} s"
    )
    print(
        f"full refresh of {ticks:,} ticks: {small_files:.1f} s over {done['files_before']:,} "
        f"micro-batch files, {compacted:.1f} s over {done['files_after']:,} compacted files: "
        f"{small_files / compacted:.1f}x faster"
    )
    if different := differences(before, after):
        raise SystemExit("the marts differ after compaction:\n" + "\n".join(different))
    print(f"marts the same before and after, to 1e-9 ({', '.join(MARTS)})")


if __name__ == "__main__":
    main()
