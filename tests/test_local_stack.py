"""The real local stack (`stock-pipeline dev`: emulator, producer, dagster dev with its daemon):
a run worker killed by SIGKILL, then Ctrl-C and a second start. Every tick put on either stream
(counted by reading the streams themselves) ends up once in the lake and in `daily_prices`.

This is the one test that runs the whole stack; it takes a few minutes, bounded by timeouts.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from stock_pipeline import emulator
from stock_pipeline.resources import warehouse
from stock_pipeline.settings import get_settings
from tests.helpers import query_lake

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = "AAPL,MSFT,NVDA,AMZN"
RECOVERY_SECONDS = 120  # a killed run is re-executed, successfully, within this


class Stack:
    """One `stock-pipeline dev`, its output collected line by line."""

    def __init__(self, env: dict[str, str], log: Path):
        self.lines: list[str] = []
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stock_pipeline.cli",
                "dev",
                "--port",
                env["UI_PORT"],
                "--serve-port",
                str(emulator.free_port()),
            ],  # fmt: skip
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"stack exited before {text!r}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f} s"
            time.sleep(0.5)

    def abandon(self) -> None:
        """After a failure: Ctrl-C twice (the second skips the drain), so nothing is left."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            time.sleep(5)
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self) -> int:
        """Ctrl-C, as a person would; the exit code."""
        os.kill(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def read_stream(endpoint: str) -> list[dict]:
    """Every record on the ticks stream, decoded, read from the stream itself."""
    kinesis = emulator.client("kinesis", endpoint)
    ticks = []
    for shard in kinesis.list_shards(StreamName="stock-ticks")["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName="stock-ticks", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            ticks += [json.loads(record["Data"]) for record in page["Records"]]
            if not page["Records"] and not page.get("MillisBehindLatest"):
                break
            iterator = page.get("NextShardIterator")
    return ticks


def kill_a_run_worker(instance: dg.DagsterInstance, timeout: float) -> tuple[str, float]:
    """SIGKILL the worker of the first raw_ticks_job run seen started: (run id, when)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = instance.get_runs(
            dg.RunsFilter(job_name="raw_ticks_job", statuses=[dg.DagsterRunStatus.STARTED])
        )
        for run in started:
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                pid = event.dagster_event.engine_event_data.metadata.get("pid")
                if pid is not None:
                    os.kill(int(pid.value), signal.SIGKILL)
                    return run.run_id, time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"no raw_ticks_job run started within {timeout:.0f} s")


def wait_for_successful_retry(instance: dg.DagsterInstance, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id})):
            if run.status == dg.DagsterRunStatus.SUCCESS:
                return run.run_id
        time.sleep(1)
    raise AssertionError(f"run {run_id} was not re-executed successfully within {timeout:.0f} s")


def successful_runs(instance: dg.DagsterInstance) -> int:
    return instance.get_runs_count(
        dg.RunsFilter(job_name="raw_ticks_job", statuses=[dg.DagsterRunStatus.SUCCESS])
    )


def wait_for_runs(instance: dg.DagsterInstance, succeeded: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while successful_runs(instance) < succeeded:
        assert time.monotonic() < deadline, f"fewer than {succeeded} runs after {timeout:.0f} s"
        time.sleep(1)


@pytest.fixture
def stacks():
    """Stacks a test starts; whatever the outcome, none outlives it."""
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.abandon()


@pytest.fixture
def stack_env(tmp_path) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{emulator.free_port()}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DAGSTER_", "WAREHOUSE_", "LAKE_", "TICKS_"))
    }
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        DAGSTER_HOME=str(tmp_path / ".dagster"),
        WAREHOUSE_CATALOG=f"sqlite:{tmp_path / '.data' / 'warehouse.sqlite'}",
        WAREHOUSE_DATA_PATH=f"{tmp_path / '.data' / 'warehouse'}/",
        LOCAL_S3_DIR=str(tmp_path / ".data" / "s3"),
        SYMBOLS=SYMBOLS,
        PRODUCER_RATE="100",
        DEV_DRAIN_TIMEOUT_SECONDS="240",
        UI_PORT=str(emulator.free_port()),
    )
    return env


@pytest.mark.slow
def test_kill_and_restart_lose_and_double_nothing(stack_env, stacks, tmp_path, monkeypatch):
    endpoint, log = stack_env["AWS_ENDPOINT_URL"], tmp_path / "stack.log"
    monkeypatch.setenv("DAGSTER_HOME", stack_env["DAGSTER_HOME"])  # this test's instance
    on_streams: list[dict] = []

    # First start: SIGKILL a run worker mid-run; the daemon re-executes the run.
    stack = Stack(stack_env, log)
    stacks.append(stack)
    stack.wait_for_line("Dagster UI", timeout=120)
    with dg.DagsterInstance.get() as instance:
        killed, killed_at = kill_a_run_worker(instance, timeout=240)
        retry = wait_for_successful_retry(instance, killed, RECOVERY_SECONDS)
        print(
            f"killed {killed}, retry {retry} succeeded {time.monotonic() - killed_at:.0f} s after"
        )

    # Ctrl-C: the producer stops, the pipeline drains the stream, then everything stops.
    stop = threading.Thread(target=lambda: setattr(stack, "code", stack.stop()))
    stop.start()
    stack.wait_for_line("draining the stream", timeout=60)
    on_streams += read_stream(endpoint)  # final: the producer has stopped
    stop.join()
    assert stack.code == 0 and any("drained:" in line for line in stack.lines)

    with dg.DagsterInstance.get() as instance:
        succeeded_before = successful_runs(instance)

    # Second start on the same local state: a new, empty stream; the lake comes back from disk.
    stack = Stack(stack_env, log)
    stacks.append(stack)
    stack.wait_for_line("lake restored", timeout=120)
    assert not any("STARTING CLEAN" in line for line in stack.lines)
    with dg.DagsterInstance.get() as instance:
        wait_for_runs(instance, succeeded=succeeded_before + 1, timeout=240)
    stop = threading.Thread(target=lambda: setattr(stack, "code", stack.stop()))
    stop.start()
    stack.wait_for_line("draining the stream", timeout=300)
    second = read_stream(endpoint)
    on_streams += second
    stop.join()
    assert stack.code == 0 and len(second) > 0

    # Once in the lake (as the emulator saved it on disk), once in daily_prices.
    saved = f"{stack_env['LOCAL_S3_DIR']}/stock-lake"
    lake_ids = Counter(event_id for (event_id,) in query_lake("select event_id from ticks", saved))
    assert lake_ids == Counter(t["event_id"] for t in on_streams)
    unique = {t["event_id"]: t for t in on_streams}.values()
    expected = Counter()
    volume = Counter()
    for tick in unique:
        expected[tick["symbol"]] += 1
        volume[tick["symbol"]] += tick["volume"]
    for name in ("WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH"):
        monkeypatch.setenv(name, stack_env[name])
    get_settings.cache_clear()
    with warehouse.connect() as con:
        marts = con.execute(
            "select symbol, sum(trade_count), sum(volume) from daily_prices group by symbol"
        ).fetchall()
    assert {s: (int(n), int(v)) for s, n, v in marts} == {
        s: (expected[s], volume[s]) for s in expected
    }

    # Only the killed run failed: a shutdown fails nothing, so no run_failure alert for it.
    with dg.DagsterInstance.get() as instance:
        failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        canceled = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.CANCELED]))
    assert [run.run_id for run in failed] == [killed] and not canceled
