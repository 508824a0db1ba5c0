"""Reads from a second process while micro-batches are built, against the same reads unloaded.

In a fresh emulator and warehouse (catalog and data files on local disk, as `make dev` keeps
them): 1,000,000 ticks of history for 100 symbols, built once. A reader process then repeats two
reads as the API server makes them, on a `Reader` connection that follows the complete builds:
all of `latest_quotes`, and one symbol-day of `minute_bars`. First for a while with nothing
writing (the baseline), then while this process builds 1,000-tick micro-batches back to back, as
the Dagster step does. It also prints what one `connect()` costs (a notebook's, or
`stock-pipeline sql`'s, start). Prints p50/p95 of each read, the ratio of
the loaded p95 to the baseline's, the errors, and how many builds the reader saw.
Targets: p95 at most 100 ms (latest_quotes) and 300 ms (minute_bars), at most 2x the baseline,
no error.
Usage: python benchmarks/read_while_writing.py [seconds per phase]
"""

import json
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable

import numpy as np
from dbt_benchlib import SYMBOLS, Lake, dbt, emulator

BUILD = ("build", "--exclude-resource-type", "unit_test")
READS = {
    "latest_quotes": "select * from latest_quotes",
    "minute_bars, one symbol-day": (
        "select * from minute_bars where symbol = $symbol and trade_date = $day"
    ),
}
READER = textwrap.dedent(
    """
    import json, sys, time
    from stock_pipeline.resources.warehouse import Reader, connect
    reads, symbol, day = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    started = time.perf_counter()
    connect().close()
    print(json.dumps({"read": "connect()", "seconds": time.perf_counter() - started}))
    reader = Reader()
    deadline = time.monotonic() + float(sys.argv[4])
    while time.monotonic() < deadline:
        for name, sql in reads.items():
            started = time.perf_counter()
            try:
                con = reader.cursor()
                params = {"symbol": symbol, "day": day} if "$" in sql else {}
                rows = len(con.execute(sql, params).fetchall())
                line = {"read": name, "seconds": time.perf_counter() - started, "rows": rows,
                        "builds": reader.snapshot().snapshot_id}
            except Exception as err:
                line = {"read": name, "error": f"{type(err).__name__}: {err}"}
            print(json.dumps(line), flush=True)
        time.sleep(0.05)
    """
)


def read(seconds: float, day: str, meanwhile: Callable[[], None]) -> str:
    """Run the reader for `seconds`, calling `meanwhile` until it ends; its output lines.

    They go to a file: a pipe left unread while this process builds would fill up and block the
    reader.
    """
    args = [json.dumps(READS), SYMBOLS[0], day, str(seconds)]
    with tempfile.TemporaryFile("w+") as lines:
        process = subprocess.Popen([sys.executable, "-c", READER, *args], stdout=lines, text=True)
        while process.poll() is None:
            meanwhile()
        lines.seek(0)
        return lines.read()


def summary(output: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in output.splitlines()]
    out = {}
    for name in [*READS, "connect()"]:
        timed = [line["seconds"] for line in lines if line["read"] == name and "seconds" in line]
        out[name] = {
            "reads": len(timed),
            "p50": float(np.percentile(timed, 50)) if timed else float("nan"),
            "p95": float(np.percentile(timed, 95)) if timed else float("nan"),
            "errors": [line["error"] for line in lines if line["read"] == name and "error" in line],
            "builds_seen": len({line["builds"] for line in lines if line["read"] == name
                                and "builds" in line}),
        }  # fmt: skip
    return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    with emulator():
        lake = Lake()
        lake.history(1_000_000)
        print(f"first (full) build: {dbt(*BUILD):.1f} s", flush=True)
        day = time.strftime("%Y-%m-%d", time.gmtime(lake.last_us / 1e6))

        baseline = summary(read(seconds, day, meanwhile=lambda: time.sleep(0.5)))

        builds = []
        under_load = summary(
            read(
                seconds,
                day,
                meanwhile=lambda: builds.append(dbt(*BUILD, lake_objects=lake.batch(1_000))),
            )
        )

    print(f"{len(builds)} micro-batch builds while reading, median {np.median(builds):.2f} s")
    print(f"one connect(), extensions loaded: {baseline['connect()']['p50'] * 1000:.0f} ms")
    for name in READS:
        base, load = baseline[name], under_load[name]
        print(f"{name}:")
        print(f"  no writer:   p50 {base['p50'] * 1000:6.1f} ms  p95 {base['p95'] * 1000:6.1f} ms"
              f"  ({base['reads']} reads, {len(base['errors'])} errors)")  # fmt: skip
        print(f"  with writer: p50 {load['p50'] * 1000:6.1f} ms  p95 {load['p95'] * 1000:6.1f} ms"
              f"  ({load['reads']} reads, {len(load['errors'])} errors, "
              f"{load['builds_seen']} builds seen)")  # fmt: skip
        print(f"  p95 ratio with/without writer: {load['p95'] / base['p95']:.2f}")
        for error in (base["errors"] + load["errors"])[:5]:  # the first few, if any
            print(f"  error: {error}")


if __name__ == "__main__":
    main()
