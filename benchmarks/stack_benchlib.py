"""Shared by the benchmarks that run the real stack: the emulator (`stock-pipeline local-aws`) and
`dagster dev` (the instance file of `stock-pipeline dev`), on free loopback ports, with a temporary
DAGSTER_HOME, warehouse and emulator S3 directory; every process started is stopped by its
process group. Also what a raw_ticks_job run spends its time on, from Dagster's event log; probe
ticks and how long each took to show in `latest_quotes`; the lake's row count, read without
disturbing the writer; a time limit. Not a benchmark by itself.
"""

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import dagster as dg
import duckdb
import numpy as np

from stock_pipeline.cli import dagster_dev_command, stop_process_groups, write_dev_instance
from stock_pipeline.emulator import free_port
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.resources.warehouse import attach_lake, connect
from stock_pipeline.settings import export_environment, get_settings

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "stock_pipeline.cli"]


class Stack:
    """The environment of a throwaway stack, and the processes started in it.

    Entering makes Ctrl-C stop the children; leaving stops every process started, last first.
    """

    def __init__(self, prefix: str):
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        (self.tmp / "dagster_home").mkdir()
        write_dev_instance(self.tmp / "dagster_home")
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            DAGSTER_HOME=str(self.tmp / "dagster_home"),
            # As `make dev` keeps it: the catalog and data files on local disk.
            WAREHOUSE_CATALOG=f"sqlite:{self.tmp / 'warehouse.sqlite'}",
            WAREHOUSE_DATA_PATH=f"{self.tmp / 'warehouse'}/",
            LOCAL_S3_DIR=str(self.tmp / "s3"),  # the emulator's S3, not the checkout's .data/s3
        )
        get_settings.cache_clear()  # the environment above
        export_environment()
        # Created (and its storage initialised) before dagster dev starts, not racing it.
        self.instance = dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Stack":
        # Started in the background by a non-interactive shell, this process (and so its
        # children) would ignore Ctrl-C; the children must stop on SIGINT as they do in a terminal.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc) -> None:
        stop_process_groups(list(reversed(self.processes)), timeout=60)

    def start(self, name: str, *args: str, cwd: Path = ROOT) -> subprocess.Popen:
        # Each in its own process group, so stopping it stops what it started (dagster dev's
        # webserver, daemon, code server and runs); output kept for a look afterwards.
        with (self.tmp / f"{name}.log").open("w") as log:
            process = subprocess.Popen(
                args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        """Stop one process started here (its group), before the others; it is no longer
        watched by `check_running`."""
        stop_process_groups([process], timeout=60)
        self.processes.remove(process)

    def start_emulator(self) -> subprocess.Popen:
        """`stock-pipeline local-aws`, returning once it has provisioned the stream."""
        port = get_settings().aws_endpoint_url.rsplit(":", 1)[1]
        process = self.start("emulator", *CLI, "local-aws", "--port", port)
        self.wait_for(stream_ready, 60, "the emulator")
        return process

    def start_dagster(self) -> subprocess.Popen:
        return self.start(
            "dagster", *dagster_dev_command(free_port()), cwd=self.tmp / "dagster_home"
        )

    def check_running(self, what: str) -> None:
        if exited := [p.args for p in self.processes if p.poll() is not None]:
            raise SystemExit(f"waiting for {what}, but a process exited: {exited}")

    def wait_for(self, condition, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what} after {limit:.0f} s")
            self.check_running(what)
            time.sleep(1)


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self, doing: str) -> None:
        if time.monotonic() > self.at:
            raise SystemExit(
                f"gave up: the time limit of {self.seconds:.0f} s passed while {doing}"
            )


def stream_ready() -> bool:
    try:
        description = boto3.client("kinesis").describe_stream_summary(
            StreamName=get_settings().ticks_stream
        )
    except Exception:  # the emulator is still starting or provisioning
        return False
    return description["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


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


def latest_quotes_times(instance: dg.DagsterInstance) -> list[float]:
    records = instance.fetch_materializations(dg.AssetKey("latest_quotes"), limit=10_000).records
    return sorted(record.timestamp for record in records)


class Probes:
    """Probe ticks (symbol PROBE, event time = now), each put alone through the real Kinesis
    producer; once Dagster has stopped, how long each took to reach the lake, dbt and
    `latest_quotes` (Dagster's event log), read without touching the warehouse while it is written.
    """

    def __init__(self):
        self.producer = KinesisProducer(boto3.client("kinesis"), get_settings().ticks_stream)
        self.put_at: dict[str, float] = {}  # event_id -> when it was put (epoch seconds)

    def put(self) -> None:
        event_id = f"probe-{uuid.uuid4()}"
        now = datetime.now(UTC)
        tick = {
            "event_id": event_id,
            "symbol": "PROBE",
            "ts": now.isoformat(),
            "price": 100.0 + len(self.put_at) / 100,
            "volume": 1,
            "source": "synthetic",
            "schema_version": 1,
        }
        self.producer.put_ticks([tick])
        self.put_at[event_id] = now.timestamp()

    def count(self, since: float = -math.inf, until: float = math.inf) -> int:
        return sum(since <= put < until for put in self.put_at.values())

    def legs(
        self, instance: dg.DagsterInstance, since: float = -math.inf, until: float = math.inf
    ) -> dict[str, list[float]]:
        """Seconds of each leg, for the probes put between `since` and `until`."""
        quotes = latest_quotes_times(instance)
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
            put = self.put_at.get(event_id)
            visible = next((t for t in quotes if t >= loaded_at), None)
            if put is None or not since <= put < until:
                continue
            if visible is None:
                continue  # loaded by a run that had not reached latest_quotes when Dagster stopped
            legs["put -> lake"].append(ingested - put)
            legs["lake -> dbt load"].append(loaded_at - ingested)
            legs["dbt load -> latest_quotes"].append(visible - loaded_at)
            legs["put -> latest_quotes"].append(visible - put)
        return legs


class LakeRows:
    """Ticks in the lake now: one listing of raw/ticks, and the row count (Parquet footer) of
    each object not seen before, so a poll costs the emulator little while it serves the runs."""

    def __init__(self):
        settings = get_settings()
        self.s3 = boto3.client("s3")
        self.bucket = settings.lake_bucket
        self.prefix = "/".join(p for p in (settings.lake_prefix.strip("/"), "raw/ticks/") if p)
        self.con = attach_lake(duckdb.connect())
        self.rows: dict[tuple[str, str], int] = {}  # (key, ETag): an overwrite is a new object
        self.count = 0

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def objects(self) -> list[tuple[str, str]]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        return [
            (item["Key"], item["ETag"])
            for page in pages
            for item in page.get("Contents", [])
            if item["Key"].endswith(".parquet")
        ]

    def poll(self) -> int:
        objects = self.objects()
        new = [obj for obj in objects if obj not in self.rows]
        if new:
            try:
                counts = dict(
                    self.con.execute(
                        "select file_name, num_rows from parquet_file_metadata(?)",
                        [[self.url(key) for key, _ in new]],
                    ).fetchall()
                )
            except duckdb.Error:  # an object replaced or compacted away since the listing
                return self.count
            self.rows.update((obj, counts[self.url(obj[0])]) for obj in new)
        self.count = sum(self.rows[obj] for obj in objects)
        return self.count

    def distinct_event_ids(self) -> tuple[int, int]:
        """Rows and distinct event ids, read whole: for the check once the drain is done."""
        urls = [self.url(key) for key, _ in self.objects()]
        return self.con.execute(
            "select count(*), count(distinct event_id) from read_parquet(?)", [urls]
        ).fetchone()
