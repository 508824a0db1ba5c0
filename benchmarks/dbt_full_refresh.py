"""Full refresh of the marts from 10,000,000 ticks (100 symbols): dbt on DuckDB vs pandas.

Writes the ticks to the lake in a fresh emulator, then times, in this process:
  dbt     `dbt run --full-refresh` of the tick models: staging and everything downstream of it
          (the lake read over httpfs, de-duplication, exclusions, minute bars, moving averages,
          daily prices, quotes)
  pandas  the same marts with pandas and numpy (tests/transform/reference.py, the tests' oracle),
          from the same lake files read with pyarrow
Prints both and the ratio pandas/dbt (target >= 3), and where each spends its time: dbt's own
timing per model (run_results.json) against pandas' lake read and compute.
Usage: python benchmarks/dbt_full_refresh.py [ticks]
"""

import json
import sys
import time

import pyarrow.dataset as ds
import pyarrow.fs as pafs
from dbt_benchlib import DBT_PROJECT_DIR, Lake, dbt, emulator

from stock_pipeline.settings import get_settings
from tests.transform import reference

COLUMNS = ["event_id", "symbol", "ts", "price", "volume"]


def pandas_marts() -> tuple[dict, float]:
    """The marts, and the seconds spent reading the lake."""
    started = time.perf_counter()
    settings = get_settings()
    endpoint = settings.aws_endpoint_url
    lake = pafs.S3FileSystem(
        endpoint_override=endpoint.split("://")[1],
        scheme=endpoint.split("://")[0],
        access_key=settings.aws_access_key_id,
        secret_key=settings.aws_secret_access_key,
        region=settings.aws_default_region,
    )
    ticks = (
        ds.dataset(
            f"{get_settings().lake_bucket}/raw/ticks",
            filesystem=lake,
            format="parquet",
            partitioning="hive",
        )
        .to_table(columns=COLUMNS)
        .to_pandas()
    )
    read = time.perf_counter() - started
    return reference.marts(ticks), read


def model_seconds() -> dict[str, float]:
    results = json.loads((DBT_PROJECT_DIR / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}


def main() -> None:
    ticks = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    with emulator():
        started = time.perf_counter()
        Lake().history(ticks)
        print(
            f"{ticks:,} ticks (100 symbols) written to the lake in "
            f"{time.perf_counter() - started:.1f} s"
        )
        # As Dagster does when it loads the code: dbt parses once for this warehouse, and the
        # timed run starts from that partial parse.
        dbt("parse")
        startup = dbt("run", "--select", "tag:nothing-selected")
        dbt_seconds = dbt("run", "--full-refresh", "--select", "stg_lake__tick_exclusions+")
        models = model_seconds()
        print(
            f"dbt full refresh: {dbt_seconds:.1f} s, of which models "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in models.items())
            + f"; dbt's own start-up (a run that selects nothing) {startup:.1f} s"
        )
        started = time.perf_counter()
        marts, read = pandas_marts()
        pandas_seconds = time.perf_counter() - started
        print(
            f"pandas, same marts: {pandas_seconds:.1f} s, of which lake read {read:.1f} s "
            f"({len(marts['minute_bars']):,} minute bars)"
        )
    marts_sql = sum(v for k, v in models.items() if not k.startswith("stg_lake__"))
    print(
        f"full refresh of {ticks:,} ticks: dbt {dbt_seconds:.1f} s, pandas {pandas_seconds:.1f} s;"
        f" pandas/dbt = {pandas_seconds / dbt_seconds:.2f} (target >= 3). Marts from staging only:"
        f" SQL {marts_sql:.1f} s vs pandas compute {pandas_seconds - read:.1f} s"
        f" (ratio {(pandas_seconds - read) / marts_sql:.2f})"
    )


if __name__ == "__main__":
    main()
