"""A warehouse built through the real path, and `stock-pipeline serve` on a free loopback port.

The marts come from ticks put on the emulator's stream, the sensor, raw_ticks and dbt; the daily
history from daily_bars and dbt; the alerts from the real ledger and SNS. Building them takes a
while, so each test module shares one warehouse and one server.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import requests

from stock_pipeline.cli import stop_process_groups
from stock_pipeline.defs.transform.assets import daily_bar_models
from stock_pipeline.emulator import free_port
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.provision import provision
from stock_pipeline.resources.alerts import Alert, AlertsResource
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings
from tests.conftest import clean_pipeline_env
from tests.helpers import StreamIngest
from tests.history.conftest import materialize_days
from tests.sample_alerts import anomaly_alert
from tests.transform.conftest import Warehouse

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
# Three hours across a UTC midnight: the second day has a previous close.
START = datetime(2026, 11, 19, 22, 30, tzinfo=UTC)


def market_ticks(start: datetime, minutes: int, seed: int = 5) -> list[dict]:
    market = SyntheticMarket(SYMBOLS, seed=seed, start=start, ticks_per_second=0.75)
    return list(market.ticks(until=start + timedelta(minutes=minutes)))


def read_warehouse(sql: str, params: list | dict | None = None) -> pd.DataFrame:
    """A query made directly on the warehouse, as a notebook would: what the API must equal."""
    with connect() as con:
        return con.execute(sql, params or []).df()


@contextmanager
def serving() -> Iterator[str]:
    """`stock-pipeline serve` in a process of its own, as a user runs it; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "stock_pipeline.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, process_group=0)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/openapi.json", timeout=5).raise_for_status()
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        stop_process_groups([process])


class Market:
    """The pipeline's environment with a built warehouse; `ingest` and `build` add batches."""

    def __init__(self):
        self.ingest = StreamIngest()
        self.warehouse = Warehouse(self.ingest.instance)
        self.alerts = AlertsResource(
            topic_name=get_settings().alerts_topic, ledger_bucket=get_settings().lake_bucket
        )

    def add_ticks(self, ticks: list[dict]) -> None:
        self.ingest(ticks)
        self.warehouse.build()

    def add_daily_history(self, first: str, last: str) -> None:
        assert materialize_days(first, last, self.ingest.instance).success
        self.warehouse.build(models=(daily_bar_models,))


@pytest.fixture(scope="module")
def market(moto_endpoint, tmp_path_factory) -> Iterator[Market]:
    with pytest.MonkeyPatch.context() as patch:
        clean_pipeline_env(moto_endpoint, patch, tmp_path_factory.mktemp("market"))
        patch.setenv("SYMBOLS", ",".join(SYMBOLS))
        get_settings.cache_clear()
        provision(shard_count=2, wait=True)
        yield Market()


def sample_alerts() -> list[Alert]:
    """Two anomalies on AAPL's bars and a run failure, as the checks and sensors raise them."""
    minute = START + timedelta(minutes=40)
    return [
        anomaly_alert(
            "price_jump",
            "AAPL",
            minute,
            value=12.5,
            threshold=10.0,
            summary="AAPL moved 12.5 sigma in one minute",
        ),
        anomaly_alert(
            "impossible_data",
            "AAPL",
            minute + timedelta(minutes=5),
            severity="ERROR",
            summary="AAPL high below low",
        ),
        Alert(
            alert_id="run_failure:run-1",
            kind="run_failure",
            rule="run_failure",
            severity="ERROR",
            asset_key=None,
            event_time=f"{START + timedelta(minutes=50):%Y-%m-%dT%H:%M:%SZ}",
            summary="raw_ticks_job failed",
        ),
    ]
