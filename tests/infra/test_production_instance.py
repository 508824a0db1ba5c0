"""deploy/dagster.yaml: a micro-batch end to end on the production instance, on PostgreSQL.

Dagster's storage and the warehouse catalog share one PostgreSQL (one database here), as a
deployment with several hosts would."""

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from stock_pipeline.defs.ingest.sensors import kinesis_ticks_sensor
from stock_pipeline.resources import warehouse
from stock_pipeline.settings import get_settings
from tests.postgres import require_postgres
from tests.quality.conftest import session_ticks

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def libpq_url(dsn: str) -> str:
    """`host=... port=... user=... dbname=...` as the postgresql:// URL Dagster takes."""
    fields = dict(part.split("=", 1) for part in dsn.split())
    return f"postgresql+psycopg2://{fields['user']}@{fields['host']}:{fields['port']}/{fields['dbname']}"


def psql(dsn: str, sql: str) -> str:
    command = [str(require_postgres() / "psql"), dsn, "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def production_instance(provisioned, postgres_database, tmp_path, monkeypatch):
    home = tmp_path / "dagster_prod"
    home.mkdir()
    shutil.copy(DEPLOY, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", libpq_url(postgres_database))
    monkeypatch.setenv("WAREHOUSE_CATALOG", f"postgres:{postgres_database}")
    get_settings.cache_clear()
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_the_instance_is_the_production_one(production_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.run_monitoring_enabled
    assert instance.run_retries_enabled
    assert not instance.nux_enabled
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_a_micro_batch_end_to_end_on_postgres(production_instance, postgres_database, kinesis):
    from stock_pipeline.definitions import defs
    from stock_pipeline.producer.kinesis import KinesisProducer

    instance = production_instance
    ticks = session_ticks(["AAPL", "MSFT", "NVDA"], 10, 2.0)
    wire = ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).to_dict("records")
    KinesisProducer(kinesis, get_settings().ticks_stream).put_ticks(wire)

    context = dg.build_sensor_context(instance=instance, resources=dict(defs.resources))
    (request,) = kinesis_ticks_sensor(context).run_requests
    job = defs.resolve_job_def("raw_ticks_job")
    assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 0
    result = job.execute_in_process(run_config=request.run_config, instance=instance)
    assert result.success

    # Everything Dagster recorded is in PostgreSQL, where every host of a deployment reads it.
    assert psql(postgres_database, "select status from runs") == "SUCCESS"
    materialized = psql(
        postgres_database,
        "select distinct asset_key from event_logs where dagster_event_type = "
        "'ASSET_MATERIALIZATION' order by 1",
    ).splitlines()
    assert '["raw_ticks"]' in materialized and '["latest_quotes"]' in materialized
    # The dbt step claimed a slot of the `duckdb` pool (slots are made at the first claim), of
    # one, and gave it back.
    pool = instance.event_log_storage.get_concurrency_info("duckdb")
    assert (pool.slot_count, pool.limit, pool.claimed_slots) == (1, 1, [])

    # The warehouse catalog lives on the same PostgreSQL, its data files in the lake bucket.
    with warehouse.connect() as con:
        (counted,) = con.execute("select sum(trade_count) from daily_prices").fetchone()
    assert counted == len(ticks)
    assert int(psql(postgres_database, "select count(*) from ducklake_data_file")) > 0
