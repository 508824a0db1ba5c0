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
import uuid
from datetime import UTC, datetime

import boto3
import dagster as dg
from stack_benchlib import CLI, Stack, print_percentiles, run_legs

from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings

PROBE_EVERY = 4.0
WARM_UP_LIMIT = 300.0
SETTLE = 60.0  # after the last probe, wait for a latest_quotes this much later


def latest_quotes_times(instance: dg.DagsterInstance) -> list[float]:
    records = instance.fetch_materializations(dg.AssetKey("latest_quotes"), limit=10_000).records
    return sorted(record.timestamp for record in records)


def main() -> None:
    probes = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    stack = Stack(prefix="freshness-")
    instance = stack.instance
    put_at: dict[str, float] = {}

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

        producer = KinesisProducer(boto3.client("kinesis"), get_settings().ticks_stream)
        for n in range(probes):
            event_id = f"probe-{uuid.uuid4()}"
            now = datetime.now(UTC)
            tick = {
                "event_id": event_id,
                "symbol": "PROBE",
                "ts": now.isoformat(),
                "price": 100.0 + n / 100,
                "volume": 1,
                "source": "synthetic",
                "schema_version": 1,
            }
            producer.put_ticks([tick])
            put_at[event_id] = now.timestamp()
            time.sleep(PROBE_EVERY)
        last = max(put_at.values())
        stack.wait_for(
            lambda: latest_quotes_times(instance)[-1] > last + SETTLE, 300, "the last probes"
        )
        quotes = latest_quotes_times(instance)
        runs = instance.get_runs()
        failed = [r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        print(f"{len(runs)} runs, {len(failed)} failed {failed}", flush=True)

    with connect(latest=True) as con:
        loaded = con.execute(
            "select event_id, epoch(ingested_at), epoch(loaded_at) from stg_lake__ticks"
            " where symbol = 'PROBE'"
        ).fetchall()
    legs = {
        "put -> lake": [],
        "lake -> dbt load": [],
        "dbt load -> latest_quotes": [],
        "put -> latest_quotes": [],
    }
    for event_id, ingested, loaded_at in loaded:
        visible = next((t for t in quotes if t >= loaded_at), None)
        if visible is None:
            continue  # loaded by a run that had not reached latest_quotes when Dagster stopped
        put = put_at[event_id]
        legs["put -> lake"].append(ingested - put)
        legs["lake -> dbt load"].append(loaded_at - ingested)
        legs["dbt load -> latest_quotes"].append(visible - loaded_at)
        legs["put -> latest_quotes"].append(visible - put)
    print(f"{len(legs['put -> latest_quotes'])} of {len(put_at)} probes seen in latest_quotes")
    print_percentiles(legs)
    print("target: put -> latest_quotes p95 <= 30 s")
    print("where a raw_ticks_job run spends its time (from its creation by the sensor):")
    print_percentiles(run_legs(instance))


if __name__ == "__main__":
    main()
