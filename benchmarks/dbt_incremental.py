"""Incremental dbt build of one micro-batch, against a small history and two large ones.

For each history (100 symbols, ~500,000 ticks a trading day) in a fresh emulator and warehouse:
writes it to the lake, builds it once, then times `dbt build` (models and data tests, as the
Dagster asset runs it) after each of several micro-batches of 1,000 new ticks. The histories:
  100,000 ticks in files of 50,000, the baseline;
  10,000,000 ticks in files of 50,000: the cost of history size (target: at most 1.5x);
  1,000,000 ticks in 10,000 files of 100, what most of a day of `make dev` micro-batches leaves
  in two partitions: the cost of file count.
Each build reads the batch's objects, passed as the Dagster step passes them (LAKE_OBJECTS).
Prints the median and the fastest per history and their ratios to the baseline; on a shared
machine the fastest is the steadier figure.
Usage: python benchmarks/dbt_incremental.py [batches]
"""

import statistics
import sys
import time

from dbt_benchlib import FILE_ROWS, Lake, dbt, emulator

# (ticks, ticks per file); the first is the baseline.
HISTORIES = ((100_000, FILE_ROWS), (10_000_000, FILE_ROWS), (1_000_000, 100))
BATCH_TICKS = 1_000
BUILD = ("build", "--exclude-resource-type", "unit_test")


def measure(history: int, file_rows: int, batches: int) -> list[float]:
    with emulator():
        lake = Lake(file_rows=file_rows)
        started = time.perf_counter()
        lake.history(history)
        print(f"  written in {time.perf_counter() - started:.1f} s")
        print(f"  first (full) build: {dbt(*BUILD):.1f} s")
        timings = []
        for _ in range(batches):
            objects = lake.batch(BATCH_TICKS)
            timings.append(dbt(*BUILD, lake_objects=objects))
        print(f"  incremental builds: {', '.join(f'{t:.2f}' for t in timings)} s")
        return timings


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    timings = {}
    for history, file_rows in HISTORIES:
        label = f"{history:,} ticks in files of {file_rows:,}"
        print(f"history: {label}")
        timings[label] = measure(history, file_rows, batches)
    print(f"incremental build of a {BATCH_TICKS:,}-tick micro-batch, {batches} batches:")
    baseline, *others = timings
    for name, statistic in (("median", statistics.median), ("fastest", min)):
        print(f"  {name}: {statistic(timings[baseline]):.2f} s with {baseline}")
        for label in others:
            ratio = statistic(timings[label]) / statistic(timings[baseline])
            print(f"    {statistic(timings[label]):.2f} s with {label}: ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
