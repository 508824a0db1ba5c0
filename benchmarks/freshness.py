"""End-to-end freshness: from a tick put on the stream to its showing in `latest_quotes`.

Runs the real stack with the default settings, on free loopback ports, in a temporary
DAGSTER_HOME and warehouse: the emulator (`stock-pipeline local-aws`), `dagster dev` (daemon,
sensors, automation; the instance file of `stock-pipeline dev`) and the default producer
(PRODUCER_RATE ticks/s over SYMBOLS). After a warm-up it puts, through the real Kinesis producer,
a probe tick (symbol PROBE, event time = now) every PROBE_EVERY seconds. Then it stops every
process it started, by pid, and reads - without touching the warehouse while Dagster writes it -
for each probe: when it was put, when raw_ticks wrote it to the lake (`ingested_at`), when dbt
loaded it (`loaded_at`) and the first `latest_quotes` materialisation after that (Dagster's event
log). Prints p50/p95 of put -> visible and of each leg, and of where each raw_ticks_job run
spends its time (Dagster's event log): what dominates the latency.
Usage: python benchmarks/freshness.py [probes]
"""

import sys
import time

import dagster as dg
from stack_benchlib import CLI, Probes, Stack, latest_quotes_times, print_percentiles, run_legs

PROBE_EVERY = 4.0
WARM_UP_LIMIT = 300.0
SETTLE = 60.0  # after the last probe, wait for a latest_quotes this much later


def main() -> None:
    probes = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    stack = Stack(prefix="freshness-")
    instance = stack.instance

    print(f"logs and state in {stack.tmp}", flush=True)
    with stack:
        stack.start_emulator()
        stack.start_dagster()
        stack.start("producer", *CLI, "produce")
        started = time.monotonic()
        stack.wait_for(
            lambda: latest_quotes_times(instance), WARM_UP_LIMIT, "a first latest_quotes"
        )
        print(f"warm-up: first latest_quotes after {time.monotonic() - started:.0f} s", flush=True)

        probe = Probes()
        for _ in range(probes):
            probe.put()
            time.sleep(PROBE_EVERY)
        last = max(probe.put_at.values())
        stack.wait_for(
            lambda: latest_quotes_times(instance)[-1] > last + SETTLE, 300, "the last probes"
        )
        runs = instance.get_runs()
        failed = [r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        print(f"{len(runs)} runs, {len(failed)} failed {failed}", flush=True)

    legs = probe.legs(instance)
    seen = len(legs["put -> latest_quotes"])
    print(f"{seen} of {len(probe.put_at)} probes seen in latest_quotes")
    print_percentiles(legs)
    print("target: put -> latest_quotes p95 <= 30 s")
    print("where a raw_ticks_job run spends its time (from its creation by the sensor):")
    print_percentiles(run_legs(instance))


if __name__ == "__main__":
    main()
