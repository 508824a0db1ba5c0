"""The DuckLake warehouse: readers beside the writer, time travel, maintenance, the column types."""

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from stock_pipeline.defs.transform.assets import daily_bar_models, dbt_project, tick_models
from stock_pipeline.defs.transform.maintenance import storage, warehouse_maintenance_job
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.warehouse import (
    Reader,
    WarehouseError,
    connect,
    published_snapshot,
    writer,
)
from stock_pipeline.settings import get_settings
from tests.transform.test_marts import KEYS, _sorted

SYMBOLS = ["AAA", "BBB"]
START = datetime(2026, 11, 18, 23, 30, tzinfo=UTC)  # batches on both sides of midnight, UTC
MARTS = ("minute_bars", "moving_averages", "daily_prices", "latest_quotes")

# A second process, as the API server reads: every 200 ms (what the issue asks), on a connection
# that follows the complete builds, both marts in the one snapshot it sees, where each
# symbol-day's minute volumes must add up to its daily volume.
READER = textwrap.dedent(
    """
    import json, sys, time
    from stock_pipeline.resources.warehouse import Reader
    CONSISTENCY = '''
        select count(*) filter (where bars.volume is distinct from days.volume)
        from (select symbol, trade_date, sum(volume) as volume from minute_bars group by all) bars
        full join daily_prices days using (symbol, trade_date)
    '''
    reader = Reader(refresh_seconds=0.2)
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            con = reader.cursor()
            quotes = con.execute("select count(*) from latest_quotes").fetchone()[0]
            mismatched = con.execute(CONSISTENCY).fetchone()[0]
            built = con.execute("select count(*) from warehouse_builds").fetchone()[0]
            line = {"quotes": quotes, "mismatched": mismatched, "builds": built}
        except Exception as err:
            line = {"error": f"{type(err).__name__}: {err}"}
        print(json.dumps(line), flush=True)
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    """
)


def batches(count: int, minutes_each: int = 2) -> list[list[dict]]:
    market = SyntheticMarket(SYMBOLS, seed=3, start=START, ticks_per_second=0.5)
    ticks = list(market.ticks(until=START + timedelta(minutes=count * minutes_each)))
    edges = [START + timedelta(minutes=minutes_each * i) for i in range(count + 1)]
    return [
        [t for t in ticks if edges[i].isoformat() <= t["ts"] < edges[i + 1].isoformat()]
        for i in range(count)
    ]


def marts(latest: bool = False) -> dict[str, pd.DataFrame]:
    with connect(latest=latest) as con:
        return {table: _sorted(con.table(table).df(), KEYS[table]) for table in MARTS}


@pytest.mark.slow
def test_readers_see_whole_builds_while_micro_batches_are_built(ingest_ticks, warehouse, tmp_path):
    builds = warehouse.builder()
    ingest_ticks(batches(1)[0])
    builds.build()  # readers need a first build to read
    # Its lines go to a file: a pipe nobody reads during the builds would fill and block it.
    with (tmp_path / "reads.jsonl").open("w") as lines:
        reader = subprocess.Popen([sys.executable, "-c", READER, "600"], stdout=lines, text=True)
        try:
            for batch in batches(11)[1:]:
                ingest_ticks(batch)
                builds.build()
        finally:
            reader.terminate()
            try:
                reader.wait(timeout=30)
            except subprocess.TimeoutExpired:  # seen on an overloaded machine: end it anyway
                reader.kill()
                reader.wait()
    reads = [json.loads(line) for line in (tmp_path / "reads.jsonl").read_text().splitlines()]
    assert [r for r in reads if "error" in r] == []
    assert len(reads) >= 50
    assert {r["mismatched"] for r in reads} == {0}
    assert len({r["builds"] for r in reads}) >= 5  # it read while the builds went on
    assert {r["quotes"] for r in reads} == {len(SYMBOLS)}


def test_time_travel_reads_the_build_of_that_time(ingest_ticks, warehouse):
    first, second = batches(2)
    ingest_ticks(first)
    warehouse.build()
    after_first = marts()
    time.sleep(1.1)  # snapshot times have microseconds; a clear second between the builds
    between = datetime.now(UTC)
    time.sleep(1.1)
    ingest_ticks(second)
    warehouse.build()

    with connect(at=between) as con:
        then = {table: _sorted(con.table(table).df(), KEYS[table]) for table in MARTS}
    for table in MARTS:
        pd.testing.assert_frame_equal(then[table], after_first[table])
    assert len(marts()["minute_bars"]) > len(after_first["minute_bars"])

    def sql(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "stock_pipeline.cli", "sql", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    counted = "select sum(trade_count) as ticks from daily_prices"
    shown = sql("--format", "json", "--at", between.isoformat(), counted)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == [{"ticks": len(first)}]
    now = sql("--format", "csv", counted)
    assert now.stdout.splitlines() == ["ticks", str(len(first) + len(second))]
    assert "latest_quotes" in sql("select 'latest_quotes' as mart").stdout  # the table format

    bad = sql("selec * from latest_quotes")
    assert bad.returncode != 0 and bad.stderr.startswith("error: Parser Error")
    assert len(bad.stderr.splitlines()) == 1
    too_early = sql("--at", "2001-01-01T00:00:00Z", counted)
    assert too_early.returncode != 0 and "no complete build" in too_early.stderr
    with pytest.raises(WarehouseError, match="no complete build"):
        connect(at=datetime(2001, 1, 1, tzinfo=UTC))


@pytest.mark.slow
def test_maintenance_after_50_micro_batches_leaves_fewer_files_and_the_same_marts(
    ingest_ticks, warehouse
):
    builds = warehouse.builder()
    for batch in batches(50, minutes_each=1):
        ingest_ticks(batch)
        builds.build()
    before = marts()
    with writer() as con:
        files_before = storage(con)
    assert files_before["snapshots"] > 50

    # Retention 0: every snapshot but the newest expires and unused files go at once.
    result = warehouse_maintenance_job.execute_in_process(
        run_config={"ops": {"checkpoint_warehouse": {"config": {"retention_hours": 0}}}},
        instance=warehouse.instance,
    )
    assert result.success
    with writer() as con:
        files_after = storage(con)
    assert files_after["live_files"] < files_before["live_files"] / 5
    assert files_after["stored_files"] < files_before["stored_files"] / 5
    assert files_after["snapshots"] < files_before["snapshots"]
    after = marts()
    for table in MARTS:
        pd.testing.assert_frame_equal(after[table], before[table])


def test_maintenance_leaves_readers_a_complete_build_to_pin(ingest_ticks, warehouse):
    ingest_ticks(batches(1)[0])
    warehouse.build()
    before = marts()
    served = Reader()  # as the API server reads, from before maintenance to after it
    assert served.snapshot() is not None
    with writer() as con:
        made = storage(con)["snapshots"]

    # An hour's retention keeps every snapshot of the last minutes (time travel reaches them).
    an_hour = {"ops": {"checkpoint_warehouse": {"config": {"retention_hours": 1}}}}
    assert warehouse_maintenance_job.execute_in_process(
        run_config=an_hour, instance=warehouse.instance
    ).success
    with writer() as con:
        assert storage(con)["snapshots"] >= made
    expired = {"ops": {"checkpoint_warehouse": {"config": {"retention_hours": 0}}}}

    # Right after a complete build: compaction leaves the same marts, still complete.
    assert warehouse_maintenance_job.execute_in_process(
        run_config=expired, instance=warehouse.instance
    ).success
    assert published_snapshot() is not None
    served.refresh_seconds = 0
    assert served.snapshot() is not None
    for table in MARTS:
        pd.testing.assert_frame_equal(marts()[table], before[table])

    # After a build that failed half-way: readers keep the last complete one.
    with writer() as con:
        con.execute("create table warehouse.main.half_a_build as select 1 as model")
    assert warehouse_maintenance_job.execute_in_process(
        run_config=expired, instance=warehouse.instance
    ).success
    assert served.snapshot() is not None
    for table in MARTS:
        pd.testing.assert_frame_equal(marts()[table], before[table])
    served.close()


def test_mart_columns_have_the_types_and_constraints_their_yml_documents(ingest_ticks, warehouse):
    ingest_ticks(batches(1)[0])
    warehouse.build(models=(tick_models, daily_bar_models))
    manifest = json.loads(dbt_project().manifest_path.read_text())
    with connect() as con:
        built = con.execute(
            "select table_name, column_name, data_type, is_nullable = 'NO'"
            " from information_schema.columns"
            " where table_catalog = 'warehouse' and table_schema = 'main'"
        ).fetchall()
    actual = {(table, column): (kind.lower(), not_null) for table, column, kind, not_null in built}
    documented = {
        (node["name"], column["name"]): (
            column.get("data_type"),
            {"type": "not_null"} in [{"type": c["type"]} for c in column["constraints"]],
        )
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
        and node["name"] in (*MARTS, "daily_history", "stg_lake__ticks")
        for column in node["columns"].values()
    }
    assert {key: actual.get(key) for key in documented} == documented
    tables = {table for table, _ in documented}
    assert {key for key in actual if key[0] in tables} == set(documented)  # every column

    # The warehouse itself refuses a null where the contract says not_null.
    with writer() as con, pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        con.execute("insert into warehouse.latest_quotes (symbol) values ('NULLS')")


def test_a_catalog_that_cannot_be_opened_is_named_in_one_line(aws_env, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_CATALOG", "duckdb:warehouse.db")
    get_settings.cache_clear()
    with pytest.raises(WarehouseError, match=r"^WAREHOUSE_CATALOG='duckdb:warehouse.db' is not"):
        connect()
    monkeypatch.setenv("WAREHOUSE_CATALOG", "postgres:host=127.0.0.1 port=1 dbname=none")
    get_settings.cache_clear()
    with pytest.raises(WarehouseError, match="^WAREHOUSE_CATALOG=postgres:host=127.0.0.1") as err:
        connect()
    assert "\n" not in str(err.value)


def test_before_the_first_complete_build_readers_are_told_so(aws_env):
    writer().close()  # the catalog exists, but no build has completed: nothing consistent to read
    with pytest.raises(WarehouseError, match="^the warehouse has no complete build yet"):
        connect()
    shown = subprocess.run(
        [sys.executable, "-m", "stock_pipeline.cli", "sql", "select 1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode != 0
    assert shown.stderr.startswith("error: the warehouse has no complete build yet")
    assert len(shown.stderr.splitlines()) == 1
    connect(latest=True).close()  # the pipeline's own checks still read it


def test_a_build_that_cannot_reach_the_catalog_fails_saying_so(ingest_ticks, warehouse):
    ingest_ticks(batches(1)[0])
    warehouse.build()
    unreachable = "postgres:host=127.0.0.1 port=1 dbname=warehouse"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAREHOUSE_CATALOG", unreachable)
        get_settings.cache_clear()
        result = dg.materialize(
            [tick_models],
            resources={"dbt": DbtCli(project_dir=dbt_project())},
            instance=warehouse.instance,
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert message.startswith(
        f"dagster._core.definitions.events.Failure: WAREHOUSE_CATALOG={unreachable}"
    )
