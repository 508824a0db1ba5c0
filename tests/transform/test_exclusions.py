"""`stock-pipeline exclude` through the real stream, lake and dbt builds.

After an exclusion, staging and every mart must equal the pandas reference computed without the
excluded ticks (to 1e-9), on the incremental path and after a full refresh.
"""

import json
from datetime import UTC, datetime, timedelta

import boto3
import pandas as pd
import pytest

from stock_pipeline import cli
from stock_pipeline.exclusions import PREFIX, write
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from tests.transform.test_marts import assert_full_refresh_gives_the_same_marts, assert_marts_match

SYMBOLS = ["AAA", "BBB", "CCC"]
# Two UTC trading days: an hour either side of midnight, ~10 ticks per symbol and minute.
START = datetime(2026, 11, 18, 23, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 19, tzinfo=UTC)
LONE_MINUTE = pd.Timestamp(START + timedelta(minutes=30))


def _ts(tick: dict) -> pd.Timestamp:
    return pd.Timestamp(tick["ts"])


@pytest.fixture(scope="module")
def market() -> dict:
    """Two days of ticks with three to exclude: the only tick of an AAA bar on day 1, CCC's
    last tick of day 1 (day 1's close, hence day 2's return) and a BBB bad print on day 2."""
    ticks = list(
        SyntheticMarket(SYMBOLS, seed=23, start=START, ticks_per_second=0.5).ticks(
            until=START + timedelta(hours=2)
        )
    )
    in_lone_bar = [t for t in ticks if t["symbol"] == "AAA" and _ts(t).floor("min") == LONE_MINUTE]
    assert len(in_lone_bar) > 1
    ticks = [t for t in ticks if t not in in_lone_bar[1:]]
    close = max((t for t in ticks if t["symbol"] == "CCC" and _ts(t) < MIDNIGHT), key=_ts)
    at = next(
        i
        for i, t in enumerate(ticks)
        if t["symbol"] == "BBB" and _ts(t) >= MIDNIGHT + timedelta(minutes=30)
    )
    ticks[at] = bad = {**ticks[at], "price": round(ticks[at]["price"] * 10, 2)}
    return {"ticks": ticks, "excluded": [in_lone_bar[0], close, bad]}


def exclusion_objects() -> list[str]:
    prefix = "/".join(p for p in (get_settings().lake_prefix.strip("/"), PREFIX + "/") if p)
    listing = boto3.client("s3").list_objects_v2(Bucket=get_settings().lake_bucket, Prefix=prefix)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def listed(capsys) -> list[dict]:
    """`stock-pipeline exclude --list --format json`, as records."""
    capsys.readouterr()
    cli.main(["exclude", "--list", "--format", "json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_excluded_ticks_leave_staging_and_every_mart(market, ingest_ticks, warehouse, capsys):
    ticks, excluded = market["ticks"], market["excluded"]
    ids = [t["event_id"] for t in excluded]
    kept = [t for t in ticks if t["event_id"] not in ids]
    half = next(i for i, t in enumerate(ticks) if _ts(t) >= MIDNIGHT)
    ingest_ticks(ticks[:half])
    warehouse.build()
    ingest_ticks(ticks[half:])
    warehouse.build()
    # The bad print blocks the marts on minute_bars (dbt's minute_bars_price_within_daily_range):
    # day 2 is missing from daily_prices.
    blocked = warehouse.read("daily_prices", latest=True)
    assert pd.to_datetime(blocked["trade_date"]).max() < pd.Timestamp(MIDNIGHT.date())

    cli.main(["exclude", *ids, "--reason", "bad print"])
    said = capsys.readouterr().out
    assert "excluded 3 ticks" in said and all(event_id in said for event_id in ids)
    assert len(exclusion_objects()) == 1
    # The next build, with no new tick: staging and every mart as if the ticks never came.
    warehouse.build()
    staged = warehouse.read("stg_lake__ticks")
    assert len(staged) == len(kept) and not set(ids) & set(staged["event_id"])
    assert_marts_match(warehouse, kept)
    bars = warehouse.read("minute_bars")
    assert not ((bars["symbol"] == "AAA") & (bars["minute_ts"] == LONE_MINUTE)).any()

    # Re-sent copies of the excluded ticks stay out; nothing else moves.
    ingest_ticks(excluded + ticks[:20])
    warehouse.build()
    assert len(warehouse.read("stg_lake__ticks")) == len(kept)
    assert_marts_match(warehouse, kept)

    # A full refresh gives the same marts.
    assert_full_refresh_gives_the_same_marts(warehouse)

    # --list: what, when, why, with each tick's symbol and time (the warehouse no longer holds
    # them: the exclusion recorded them).
    rows = {row["event_id"]: row for row in listed(capsys)}
    assert set(rows) == set(ids)
    for tick in excluded:
        row = rows[tick["event_id"]]
        assert (row["symbol"], row["reason"], row["status"]) == (
            tick["symbol"],
            "bad print",
            "applied",
        )
        assert pd.Timestamp(row["ts"]) == _ts(tick)
        assert abs(pd.Timestamp(row["excluded_at"]) - pd.Timestamp.now(UTC)) < pd.Timedelta("10min")


def test_exclude_refuses_unknown_ids_and_empty_reasons_and_repeats_harmlessly(
    ingest_ticks, warehouse, capsys
):
    ticks = list(
        SyntheticMarket(["AAA"], seed=5, start=START, ticks_per_second=0.2).ticks(
            until=START + timedelta(minutes=10)
        )
    )
    loaded, later = ticks[: len(ticks) // 2], ticks[len(ticks) // 2 :]
    ingest_ticks(loaded)
    warehouse.build()
    known, not_loaded = loaded[10]["event_id"], later[5]["event_id"]

    for argv, complaint in [
        ([known, "no-such-id", "--reason", "typo"], "not in the warehouse: no-such-id"),
        ([known, "--reason", "  "], "--reason"),
        ([known], "--reason"),
        (["--reason", "why"], "event_id"),
        (["--list", known], "--list"),
    ]:
        with pytest.raises(SystemExit) as refused:
            cli.main(["exclude", *argv])
        assert complaint in str(refused.value.code), argv
        assert exclusion_objects() == [], argv

    # --force: a tick not loaded yet is excluded before it arrives.
    cli.main(["exclude", known, not_loaded, "--reason", "bad print", "--force"])
    assert "(not loaded yet)" in capsys.readouterr().out
    pending = {row["event_id"]: row["status"] for row in listed(capsys)}
    assert pending == {known: "pending", not_loaded: "pending"}
    # Twice: nothing more is written. Another host excluding it at the same moment writes a
    # second object; the build counts the tick out once all the same.
    cli.main(["exclude", known, "--reason", "again"])
    assert f"already excluded, left as it was: {known}" in capsys.readouterr().out
    assert len(exclusion_objects()) == 1
    write([known], "from another host", datetime.now(UTC), {})

    ingest_ticks(later)
    warehouse.build()
    kept = [t for t in ticks if t["event_id"] not in (known, not_loaded)]
    staged = warehouse.read("stg_lake__ticks")
    assert len(staged) == len(kept) and not {known, not_loaded} & set(staged["event_id"])
    assert_marts_match(warehouse, kept)
    rows = listed(capsys)
    assert sorted((row["event_id"], row["reason"], row["status"]) for row in rows) == sorted(
        [
            (known, "bad print", "applied"),
            (known, "from another host", "applied"),
            (not_loaded, "bad print", "applied"),
        ]
    )
    symbols = {row["event_id"]: row["symbol"] for row in rows}
    assert symbols == {known: "AAA", not_loaded: None}  # never loaded: the warehouse never knew it
