"""`stock-pipeline replay-quarantine`: quarantined records back on the stream, ids kept."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from stock_pipeline.settings import get_settings
from tests.helpers import query_lake
from tests.ingest.test_quarantine import read_quarantine, tick_bytes


def replay(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "stock_pipeline.cli", "replay-quarantine", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.splitlines()


def lake_ticks() -> list[tuple[str, float]]:
    return query_lake("select event_id, price from ticks order by 1")


def test_fixed_rule_lets_replayed_ticks_in_once_with_their_event_ids(ingest_ticks, monkeypatch):
    soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    ingest_ticks.put_raw(
        [
            (tick_bytes(event_id="ahead-1", ts=soon, price=101.5), "AAPL"),
            (tick_bytes(event_id="ahead-2", ts=soon, price=102.5), "AAPL"),
            (tick_bytes(event_id="bad-1", symbol="bad symbol"), "AAPL"),
            (b"not json at all", "AAPL"),
            (tick_bytes(event_id="ok-1"), "AAPL"),
        ]
    )
    ingest_ticks.drain()
    assert [t[0] for t in lake_ticks()] == ["ok-1"]

    # A dry run counts per reason and puts nothing.
    assert replay("--dry-run") == [
        f"{'bad_symbol':40} {1:>10}",
        f"{'future_timestamp':40} {2:>10}",
        f"{'not_json':40} {1:>10}",
        f"would put 4 quarantined records back on {get_settings().ticks_stream}",
    ]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert replay("--since", tomorrow, "--dry-run")[-1].startswith("would put 0 ")
    assert ingest_ticks.drain() == 0

    # The skew rule is widened (the "fix"); only that reason is replayed, twice over.
    monkeypatch.setenv("MAX_FUTURE_SKEW_SECONDS", str(4 * 3600))
    get_settings.cache_clear()
    for _ in range(2):
        assert replay("--reason", "future_timestamp")[-1].startswith("put 2 ")
    ingest_ticks.drain()

    landed = lake_ticks()
    # Both replays landed (the lake keeps each Kinesis record); the event ids are the originals,
    # so staging counts each tick once.
    assert sorted(set(landed)) == [("ahead-1", 101.5), ("ahead-2", 102.5), ("ok-1", 170.25)]
    assert len(landed) == 5
    assert sorted(line["reason"] for line in read_quarantine()) == [
        "bad_symbol",
        "future_timestamp",
        "future_timestamp",
        "not_json",
    ]
