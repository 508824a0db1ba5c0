"""Producer -> Kinesis -> sensor -> raw_ticks -> lake: every tick once, through re-runs."""

from datetime import UTC, datetime
from itertools import cycle, islice

import boto3
import pytest
from dagster import DagsterRun, DagsterRunStatus
from dagster._core.utils import make_new_run_id

from stock_pipeline.defs.ingest.sensors import IN_FLIGHT, MAX_IN_FLIGHT
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from tests.helpers import query_lake

START = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


def lake_ticks() -> list[tuple]:
    return query_lake("select event_id, shard_id, sequence_number, dt::varchar, shard from ticks")


def lake_keys() -> set[str]:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=get_settings().lake_bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_each_tick_lands_once_and_reruns_change_nothing(ingest_ticks):
    ticks = list(SyntheticMarket(["AAPL", "MSFT", "NVDA", "JPM"], start=START).ticks(count=5000))

    ingest_ticks.put(ticks)
    result = ingest_ticks.evaluate_sensor()
    (request,) = result.run_requests
    ingest_ticks.run(request.run_config)

    rows = lake_ticks()
    assert len(rows) == 5000
    assert {r[0] for r in rows} == {t["event_id"] for t in ticks}
    # Hive partitions agree with the columns they index.
    assert all(r[3] == "2024-03-05" and r[4] == r[1] for r in rows)
    keys = lake_keys()
    assert len(keys) == 2  # one object per shard range

    # The same run again (a retry or a manual re-execution) rewrites the same objects.
    ingest_ticks.run(request.run_config)
    assert lake_keys() == keys
    assert sorted(lake_ticks()) == sorted(rows)

    # Nothing new on the stream: the sensor asks for nothing, and its run_key is stable.
    assert not ingest_ticks.evaluate_sensor().run_requests


def test_runs_are_bounded_and_cursor_advances_only_past_handed_ranges(
    ingest_ticks, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KINESIS_MAX_RECORDS_PER_RUN", "600")
    get_settings.cache_clear()
    ticks = list(SyntheticMarket(["AAPL", "MSFT", "NVDA", "JPM"], start=START).ticks(count=3000))
    ingest_ticks.put(ticks)

    first = ingest_ticks.evaluate_sensor()
    (request,) = first.run_requests
    # The sensor handed out a range but its run has not happened: the next evaluation must not
    # hand the same records again; they are the first run's to write.
    runs = ingest_ticks.drain()
    ingest_ticks.run(request.run_config)

    sizes = []
    for config in [request.run_config, *ingest_ticks.run_configs]:
        ranges = config["ops"]["raw_ticks"]["config"]["ranges"]
        sizes.append(sum(int(r["last_sequence"]) - int(r["first_sequence"]) + 1 for r in ranges))
    assert runs >= 4 and max(sizes) <= 600 and sum(sizes) == 3000

    rows = lake_ticks()
    assert len(rows) == 3000 and len({r[0] for r in rows}) == 3000


def test_late_and_cross_midnight_ticks_go_to_their_event_date(ingest_ticks):
    late = SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, 23, 59, 59, tzinfo=UTC))
    ticks = list(late.ticks(count=200))  # 50 ticks/s: spans midnight into 2024-03-06
    ingest_ticks(ticks)
    rows = lake_ticks()
    by_date = {d: sum(1 for r in rows if r[3] == d) for d in {r[3] for r in rows}}
    expected = {
        d: sum(1 for t in ticks if t["ts"].startswith(d)) for d in ("2024-03-05", "2024-03-06")
    }
    assert by_date == expected and sum(expected.values()) == 200


def test_sensor_waits_while_batches_are_in_flight(ingest_ticks):
    ingest_ticks.put(list(SyntheticMarket(["AAPL"], start=START).ticks(count=10)))
    # As many as the sensor allows, in statuses that count (a queued one would need a job origin).
    statuses = [status for status in IN_FLIGHT if status != DagsterRunStatus.QUEUED]
    in_flight = [
        DagsterRun(job_name="raw_ticks_job", run_id=make_new_run_id(), status=status)
        for status in islice(cycle(statuses), MAX_IN_FLIGHT)
    ]
    for run in in_flight:
        ingest_ticks.instance.add_run(run)
    cursor = ingest_ticks.cursor
    result = ingest_ticks.evaluate_sensor()
    assert not result.run_requests and ingest_ticks.cursor == cursor

    ingest_ticks.instance.delete_run(in_flight[0].run_id)  # below the limit: the next may go
    assert ingest_ticks.drain() == 1 and len(lake_ticks()) == 10
