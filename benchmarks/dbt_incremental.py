"""Incremental dbt build of one micro-batch, with a small and a large history.

For each history size (100,000 and 10,000,000 ticks, 100 symbols, ~500,000 ticks a trading day)
in a fresh emulator and warehouse: writes the history to the lake, builds it once, then times
`dbt build` (models and data tests, as the Dagster asset runs it) after each of several
micro-batches of 1,000 new ticks. Prints the median and the fastest per history, and their
ratios large/small (target <= 1.5); on a shared machine the fastest is the steadier figure.
Usage: python benchmarks/dbt_incremental.py [batches]
"""

import statistics
import sys
import time

from dbt_benchlib import Lake, dbt, emulator

HISTORIES = (100_000, 10_000_000)
BATCH_TICKS = 1_000
BUILD = ("build", "--exclude-resource-type", "unit_test")


def measure(history: int, batches: int) -> list[float]:
    with emulator():
        lake = Lake()
        started = time.perf_counter()
        lake.history(history)
        print(f"  {history:>10,} ticks of history written in {time.perf_counter() - started:.1f} s")
        print(f"  first (full) build: {dbt(*BUILD):.1f} s")
        timings = []
        for _ in range(batches):
            lake.batch(BATCH_TICKS)
            timings.append(dbt(*BUILD))
        print(f"  incremental builds: {', '.join(f'{t:.2f}' for t in timings)} s")
        return timings


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    timings = {}
    for history in HISTORIES:
        print(f"history {history:,} ticks")
        timings[history] = measure(history, batches)
    print(f"incremental build of a {BATCH_TICKS:,}-tick micro-batch, {batches} batches:")
    small, large = timings[HISTORIES[0]], timings[HISTORIES[1]]
    for name, statistic in (("median", statistics.median), ("fastest", min)):
        print(
            f"  {name}: {statistic(small):.2f} s with {HISTORIES[0]:,} ticks of history, "
            f"{statistic(large):.2f} s with {HISTORIES[1]:,}; "
            f"ratio {statistic(large) / statistic(small):.2f} (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
