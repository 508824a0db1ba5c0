"""Query API latency and throughput while micro-batches are built, against direct queries.

In an emulator with a temporary warehouse: writes a lake of synthetic ticks (100 symbols over
two trading days), builds the marts, publishes a few alerts, then starts `stock-pipeline serve`
on a free loopback port and a writer thread that lands a 1,000-tick micro-batch and runs
`dbt build` on it, one after another, for the whole measurement. Meanwhile it times, one request
at a time over a keep-alive connection, every endpoint (p50/p95), and the same queries made
directly on a warehouse connection in this process (the limit the API adds its cost to). Then
it counts `latest_quotes` requests per second from several concurrent clients. Prints each
figure, its ratio to the direct query, and the targets: p95 at most 100 ms for latest quotes
and 300 ms for one symbol-day of minute bars, at least 200 requests/s, at most 3x direct.
Usage: python benchmarks/serve_latency.py [requests per endpoint]
"""

import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import requests
from dbt_benchlib import SESSION_OPEN, SYMBOLS, Lake, dbt, emulator

from stock_pipeline.cli import stop_process_groups
from stock_pipeline.emulator import free_port
from stock_pipeline.resources.alerts import AlertsResource
from stock_pipeline.serve import queries
from stock_pipeline.serve.snapshot import Warehouse
from stock_pipeline.settings import get_settings
from tests.sample_alerts import anomaly_alert

BUILD = ("build", "--exclude-resource-type", "unit_test")
HISTORY_TICKS = 1_000_000  # two days of 500,000
BATCH_TICKS = 1_000
CLIENTS = 8
THROUGHPUT_SECONDS = 10.0
SYMBOL = SYMBOLS[1]


class Writer(threading.Thread):
    """Lands micro-batches and builds them with dbt, back to back, until stopped."""

    def __init__(self, lake: Lake):
        super().__init__(daemon=True)
        self.lake = lake
        self.stopping = threading.Event()
        self.builds: list[float] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            objects = self.lake.batch(BATCH_TICKS)  # passed to dbt as the Dagster step does
            self.builds.append(dbt(*BUILD, lake_objects=objects))


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def time_calls(call, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with emulator():
        lake = Lake()
        lake.history(HISTORY_TICKS)
        print(f"history: {HISTORY_TICKS:,} ticks, first build {dbt(*BUILD):.1f} s")
        day = (datetime.now(UTC) - timedelta(days=1)).date()
        session = datetime.combine(day, datetime.min.time(), UTC) + SESSION_OPEN
        start, end = session, session + timedelta(days=1)
        publish_alerts(session)

        port = free_port()
        command = [sys.executable, "-m", "stock_pipeline.cli", "serve", "--port", str(port)]
        server = subprocess.Popen(command, process_group=0, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        writer = Writer(lake)
        try:
            wait_until_serving(url, server)
            http = requests.Session()
            bars_params = {"start": start.isoformat(), "end": end.isoformat(), "limit": 10_000}
            endpoints = {
                "quotes/latest": ("/v1/quotes/latest", {}),
                "bars 1Min, a symbol-day": (f"/v1/bars/{SYMBOL}", bars_params),
                "symbols": ("/v1/symbols", {}),
                "alerts": ("/v1/alerts", {}),
                "health": ("/v1/health", {}),
            }
            bars = http.get(f"{url}/v1/bars/{SYMBOL}", params=bars_params, timeout=30).json()
            print(f"one symbol-day: {len(bars['bars'])} minute bars of {SYMBOL} on {day}")

            warehouse = Warehouse()
            direct = {
                "quotes/latest": lambda: direct_query(warehouse, queries.latest_quotes),
                "bars 1Min, a symbol-day": lambda: direct_query(
                    warehouse, queries.bars, SYMBOL, "1Min", start, end, None, 10_001
                ),
            }
            writer.start()
            results = {}
            for name, (path, params) in endpoints.items():
                api = time_calls(
                    lambda p=path, q=params: http.get(
                        f"{url}{p}", params=q, timeout=30
                    ).raise_for_status(),
                    count,
                )
                limit = time_calls(direct[name], count) if name in direct else None
                results[name] = (percentiles(api), percentiles(limit) if limit else None)
            rate = throughput(f"{url}/v1/quotes/latest")
        finally:
            writer.stopping.set()
            stop_process_groups([server])
            writer.join()
    report(results, rate, writer.builds, count)


def direct_query(warehouse: Warehouse, query, *args) -> None:
    """The API's own query, on a cursor of the pinned snapshot, without HTTP and JSON."""
    pinned = warehouse.pinned()
    with pinned.cursor() as cursor:
        query(cursor, pinned, *args).to_pylist()


def publish_alerts(session: datetime) -> None:
    alerts = AlertsResource(
        topic_name=get_settings().alerts_topic, ledger_bucket=get_settings().lake_bucket
    )

    boto3.client("sns").create_topic(
        Name=get_settings().alerts_topic
    )  # the bucket is there already
    minutes = [session + timedelta(minutes=m) for m in range(0, 100, 5)]
    delivery = alerts.publish(
        anomaly_alert("price_jump", SYMBOL, m, value=11.0, threshold=10.0) for m in minutes
    )
    assert delivery.error is None, delivery.error


def wait_until_serving(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("stock-pipeline serve exited")
        try:
            requests.get(f"{url}/v1/health", timeout=5).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise SystemExit("stock-pipeline serve did not answer within 60 s")


def throughput(url: str) -> float:
    """latest_quotes requests per second from CLIENTS concurrent keep-alive clients."""
    deadline = time.monotonic() + THROUGHPUT_SECONDS

    def client() -> int:
        http, done = requests.Session(), 0
        while time.monotonic() < deadline:
            http.get(url, timeout=30).raise_for_status()
            done += 1
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        total = sum(pool.map(lambda _: client(), range(CLIENTS)))
    return total / (time.monotonic() - started)


def report(results: dict, rate: float, builds: list[float], count: int) -> None:
    print(
        f"while {len(builds)} micro-batches of {BATCH_TICKS:,} ticks were built "
        f"(dbt build median {statistics.median(builds):.1f} s), {count} requests each:"
    )
    targets = {"quotes/latest": 100, "bars 1Min, a symbol-day": 300}
    for name, ((p50, p95), limit) in results.items():
        line = f"  {name:<24} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"
        if limit:
            line += f"   direct p50 {limit[0]:6.1f} ms  p95 {limit[1]:6.1f} ms"
            line += f"   ratio p95 {p95 / limit[1]:.2f} (target <= 3)"
        if name in targets:
            line += f"   target p95 <= {targets[name]} ms"
        print(line)
    print(f"  quotes/latest throughput: {rate:.0f} requests/s, {CLIENTS} clients (target >= 200)")


if __name__ == "__main__":
    main()
