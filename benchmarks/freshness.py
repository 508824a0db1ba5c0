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

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import dagster as dg
import numpy as np

from stock_pipeline.cli import DAGSTER_INSTANCE_YAML, dagster_dev_command, stop_process_groups
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import export_environment, get_settings

ROOT = Path(__file__).resolve().parents[1]
PROBE_EVERY = 4.0
WARM_UP_LIMIT = 300.0
SETTLE = 60.0  # after the last probe, wait for a latest_quotes this much later


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, limit: float, what: str, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {limit:.0f} s")
        if exited := [p.args for p in processes if p.poll() is not None]:
            raise SystemExit(f"waiting for {what}, but a process exited: {exited}")
        time.sleep(1)


def latest_quotes_times(instance: dg.DagsterInstance) -> list[float]:
    records = instance.fetch_materializations(dg.AssetKey("latest_quotes"), limit=10_000).records
    return sorted(record.timestamp for record in records)


def stream_ready() -> bool:
    try:
        description = boto3.client("kinesis").describe_stream_summary(
            StreamName=get_settings().ticks_stream
        )
    except Exception:  # the emulator is still starting or provisioning
        return False
    return description["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


def main() -> None:
    # Started in the background by a non-interactive shell, this process (and so its children)
    # would ignore Ctrl-C; the children must stop on SIGINT as they do in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    probes = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    tmp = Path(tempfile.mkdtemp(prefix="freshness-"))
    (tmp / "dagster_home").mkdir()
    (tmp / "dagster_home" / "dagster.yaml").write_text(DAGSTER_INSTANCE_YAML)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        DAGSTER_HOME=str(tmp / "dagster_home"),
        # As `make dev` keeps it: the catalog and data files on local disk.
        WAREHOUSE_CATALOG=f"sqlite:{tmp / 'warehouse.sqlite'}",
        WAREHOUSE_DATA_PATH=f"{tmp / 'warehouse'}/",
        LOCAL_S3_DIR=str(tmp / "s3"),  # the emulator's S3, not the checkout's .data/s3
    )
    get_settings.cache_clear()  # the environment above
    export_environment()
    # Created (and its storage initialised) before dagster dev starts, not racing it.
    instance = dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    cli = [sys.executable, "-m", "stock_pipeline.cli"]
    port = get_settings().aws_endpoint_url.rsplit(":", 1)[1]
    processes: list[subprocess.Popen] = []
    put_at: dict[str, float] = {}

    def start(name: str, *args: str, cwd: Path = ROOT) -> None:
        # Each in its own process group, so stopping it stops what it started (dagster dev's
        # webserver, daemon, code server and runs); output kept for a look afterwards.
        with (tmp / f"{name}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    print(f"logs and state in {tmp}", flush=True)
    try:
        start("emulator", *cli, "local-aws", "--port", port)
        wait_for(stream_ready, 60, "the emulator", processes)
        start("dagster", *dagster_dev_command(free_port()), cwd=tmp / "dagster_home")
        start("producer", *cli, "produce")
        started = time.monotonic()
        wait_for(
            lambda: latest_quotes_times(instance), WARM_UP_LIMIT, "a first latest_quotes", processes
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
        wait_for(
            lambda: latest_quotes_times(instance)[-1] > last + SETTLE,
            300,
            "the last probes",
            processes,
        )
        quotes = latest_quotes_times(instance)
        runs = instance.get_runs()
        failed = [r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        print(f"{len(runs)} runs, {len(failed)} failed {failed}", flush=True)
    finally:
        stop_process_groups(list(reversed(processes)), timeout=60)

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


def print_percentiles(legs: dict[str, list[float]]) -> None:
    for leg, seconds in legs.items():
        if seconds:
            p50, p95 = np.percentile(seconds, [50, 95])
            print(f"  {leg:<28} p50 {p50:5.1f} s   p95 {p95:5.1f} s")


def first_events(instance: dg.DagsterInstance, run_id: str) -> dict[tuple, float]:
    """When each (event type, step) first happened in the run."""
    first: dict[tuple, float] = {}
    for entry in instance.all_logs(run_id):
        if entry.dagster_event:
            first.setdefault(
                (entry.dagster_event.event_type_value, entry.step_key), entry.timestamp
            )
    return first


def run_legs(instance: dg.DagsterInstance) -> dict[str, list[float]]:
    """Per finished raw_ticks_job run: queue, run worker start, each step, the pool wait."""
    legs = {
        "queued": [],
        "run worker start": [],
        "raw_ticks step": [],
        "wait for the duckdb pool": [],
        "tick_models step (dbt)": [],
        "then anomaly checks": [],  # after latest_quotes, but they hold the run and the pool
    }
    done = dg.RunsFilter(job_name="raw_ticks_job", statuses=[dg.DagsterRunStatus.SUCCESS])
    for record in instance.get_run_records(done):
        at = first_events(instance, record.dagster_run.run_id)
        legs["queued"].append(at["PIPELINE_STARTING", None] - record.create_timestamp.timestamp())
        legs["run worker start"].append(at["PIPELINE_START", None] - at["PIPELINE_STARTING", None])
        legs["raw_ticks step"].append(
            at["STEP_SUCCESS", "raw_ticks"] - at["STEP_START", "raw_ticks"]
        )
        legs["wait for the duckdb pool"].append(
            at["STEP_START", "tick_models"] - at["STEP_SUCCESS", "raw_ticks"]
        )
        legs["tick_models step (dbt)"].append(
            at["STEP_SUCCESS", "tick_models"] - at["STEP_START", "tick_models"]
        )
        legs["then anomaly checks"].append(
            at["STEP_SUCCESS", "minute_bars_anomaly_checks"] - at["STEP_SUCCESS", "tick_models"]
        )
    return legs


if __name__ == "__main__":
    main()
