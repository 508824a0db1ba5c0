"""Drain: how fast a backlog on the stream reaches the lake and the marts.

Runs the real stack as freshness.py does (stack_benchlib.py): the emulator (`stock-pipeline
local-aws`) and `dagster dev` with the default settings, or those set in the environment (e.g.
KINESIS_MAX_RECORDS_PER_RUN). First it puts TICKS ticks on the stream with the real Kinesis
producer, from the synthetic market (SYMBOLS, PRODUCER_RATE ticks a second of event time, the last
one now), as fast as the producer goes; then it starts `dagster dev`. While Dagster drains the
backlog it reads, every POLL_EVERY seconds and without touching what Dagster writes: the lake's row
count (one S3 listing, and the Parquet footers of the objects new since the last poll) and the
last complete warehouse build, read-only as a server reads it (`Reader`): the sums of
`daily_prices`' trade_count and volume, and each symbol's last tick in `latest_quotes`.
Prints the put rate; the time from the start of `dagster dev` to the first and to the last tick in
the lake and in the marts; the rates after the first rows, against the target (5,000 ticks/s into
the marts), against what two shards accept on AWS (2 x 1,000 records/s, the fastest a backlog can
grow) and against the put rate; and where the sensor and each raw_ticks_job run spend their time.
Then checks that every tick put is counted once (distinct event_ids in the lake, trade_count in
`daily_prices`): exits non-zero if not, or if the time limit passes first.
Usage: python benchmarks/drain.py [ticks (1,000,000)] [--time-limit SECONDS (900)]
"""

import argparse
import itertools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import numpy as np
from stack_benchlib import Deadline, LakeRows, Stack, print_percentiles, run_legs

from stock_pipeline.producer.kinesis import MAX_RECORDS_PER_CALL, KinesisProducer
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.resources.warehouse import Reader, WarehouseError
from stock_pipeline.settings import get_settings

TARGET = 5_000  # ticks/s into the marts (issue #12)
SHARD_WRITE_LIMIT = 1_000  # records/s one Kinesis shard accepts on AWS
POLL_EVERY = 2.0
PROGRESS_EVERY = 30.0


@dataclass
class Backlog:
    """What was put: the figures every mart must add up to."""

    ticks: int = 0
    volume: int = 0
    last_ts: dict[str, datetime] = field(default_factory=dict)  # symbol -> its last event time
    seconds: float = 0.0


def preload(count: int, deadline: Deadline) -> Backlog:
    settings = get_settings()
    # Event time ends now: a tick dated after its arrival (beyond MAX_FUTURE_SKEW_SECONDS) would
    # be quarantined, not counted.
    span = timedelta(seconds=count / settings.producer_rate)
    market = SyntheticMarket(
        settings.symbols,
        start=datetime.now(UTC) - span,
        ticks_per_second=settings.producer_rate,
    )
    producer = KinesisProducer(
        boto3.client("kinesis"),
        settings.ticks_stream,
        max_in_flight=settings.producer_max_in_flight,
    )
    # Full PutRecords calls, all of them in flight at once.
    chunk = MAX_RECORDS_PER_CALL * settings.producer_max_in_flight
    backlog = Backlog()
    ticks = market.ticks(count=count)
    started = time.monotonic()
    while batch := list(itertools.islice(ticks, chunk)):
        deadline.check(f"putting the backlog ({producer.stats.sent:,} of {count:,} put)")
        producer.put_ticks(batch)
        backlog.ticks += len(batch)
        backlog.volume += sum(tick["volume"] for tick in batch)
        backlog.last_ts.update((tick["symbol"], tick["ts"]) for tick in batch)
    backlog.seconds = time.monotonic() - started
    if producer.stats.sent != count:
        raise SystemExit(f"the producer put {producer.stats.sent:,} ticks of {count:,}")
    backlog.last_ts = {s: datetime.fromisoformat(ts) for s, ts in backlog.last_ts.items()}
    return backlog


class Marts:
    """The last complete build, as a server follows it: None before the first one."""

    def __init__(self):
        self.reader: Reader | None = None

    def poll(self) -> tuple[int, int, dict[str, datetime]] | None:
        if self.reader is None:
            try:
                self.reader = Reader(refresh_seconds=0)
            except WarehouseError:  # dbt has not created the catalog yet
                return None
        if self.reader.snapshot() is None:
            return None
        cursor = self.reader.cursor()
        trades, volume = cursor.execute(
            "select coalesce(sum(trade_count), 0), coalesce(sum(volume), 0) from daily_prices"
        ).fetchone()
        last_ts = dict(cursor.execute("select symbol, last_ts from latest_quotes").fetchall())
        return int(trades), int(volume), last_ts


@dataclass
class Milestones:
    """Seconds from the start of `dagster dev`, and the count seen then."""

    lake_first: tuple[float, int] | None = None
    lake_all: float | None = None
    marts_first: tuple[float, int] | None = None
    marts_all: float | None = None
    quotes_all: float | None = None


def drain(stack: Stack, backlog: Backlog, deadline: Deadline) -> Milestones:
    lake, marts, seen = LakeRows(), Marts(), Milestones()
    started = time.monotonic()
    stack.start_dagster()
    reported = started
    while seen.marts_all is None or seen.quotes_all is None or seen.lake_all is None:
        time.sleep(POLL_EVERY)
        now = time.monotonic() - started
        in_lake = lake.poll()
        trades, volume, last_ts = marts.poll() or (0, 0, {})
        doing = f"draining ({in_lake:,} ticks in the lake, {trades:,} in daily_prices)"
        deadline.check(doing)
        stack.check_running(doing)
        if in_lake and seen.lake_first is None:
            seen.lake_first = (now, in_lake)
        if in_lake >= backlog.ticks and seen.lake_all is None:
            seen.lake_all = now
        if trades and seen.marts_first is None:
            seen.marts_first = (now, trades)
        if (trades, volume) == (backlog.ticks, backlog.volume) and seen.marts_all is None:
            seen.marts_all = now
        if last_ts == backlog.last_ts and seen.quotes_all is None:
            seen.quotes_all = now
        if trades > backlog.ticks:
            raise SystemExit(f"FAILED: daily_prices counts {trades:,} ticks, {backlog.ticks:,} put")
        if time.monotonic() - reported >= PROGRESS_EVERY:
            reported = time.monotonic()
            print(f"  {now:5.0f} s: {in_lake:>9,} in the lake, {trades:>9,} in daily_prices")
    return seen


def rate(ticks: int, first: tuple[float, int] | None, last: float | None) -> float | None:
    """Ticks a second from the first poll that saw rows to the one that saw them all."""
    if first is None or last is None or last <= first[0]:
        return None  # all of it arrived between two polls
    return (ticks - first[1]) / (last - first[0])


def ratios(per_second: float | None, put_rate: float) -> str:
    if per_second is None:
        return "n/a (all of it between two polls)"
    shards = get_settings().ticks_stream_shards
    return (
        f"{per_second:,.0f} ticks/s: {per_second / TARGET:.2f}x the target {TARGET:,}/s, "
        f"{per_second / (shards * SHARD_WRITE_LIMIT):.2f}x what {shards} shards accept "
        f"({shards * SHARD_WRITE_LIMIT:,}/s), {per_second / put_rate:.2f}x the put rate"
    )


def sensor_seconds(instance: dg.DagsterInstance) -> dict[str, list[float]]:
    """How long kinesis_ticks_sensor's evaluations took, and the gaps between its runs."""
    legs = {"sensor tick, run requested": [], "sensor tick, skipped": []}
    for state in instance.all_instigator_state():
        if state.instigator_name != "kinesis_ticks_sensor":
            continue
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
            if tick.end_timestamp is not None:
                leg = "sensor tick, run requested" if tick.run_ids else "sensor tick, skipped"
                legs[leg].append(tick.end_timestamp - tick.timestamp)
    records = instance.get_run_records(dg.RunsFilter(job_name="raw_ticks_job"))
    created = sorted(record.create_timestamp.timestamp() for record in records)
    legs["between run creations"] = list(np.diff(created))
    return legs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ticks", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--time-limit", type=float, default=900, help="seconds, in all")
    args = parser.parse_args()
    deadline = Deadline(args.time_limit)
    stack = Stack(prefix="drain-")
    settings = get_settings()
    print(f"logs and state in {stack.tmp}", flush=True)
    print(
        f"{args.ticks:,} ticks, {len(settings.symbols)} symbols, "
        f"{settings.ticks_stream_shards} shards; "
        f"KINESIS_MAX_RECORDS_PER_RUN={settings.kinesis_max_records_per_run}, "
        f"KINESIS_SENSOR_INTERVAL_SECONDS={settings.kinesis_sensor_interval_seconds}",
        flush=True,
    )
    with stack:
        stack.start_emulator()
        backlog = preload(args.ticks, deadline)
        put_rate = backlog.ticks / backlog.seconds
        print(
            f"pre-load: {backlog.ticks:,} ticks put in {backlog.seconds:.1f} s, "
            f"{put_rate:,.0f} ticks/s ({settings.producer_max_in_flight} PutRecords in flight)",
            flush=True,
        )
        print("drain, seconds from the start of dagster dev:", flush=True)
        seen = drain(stack, backlog, deadline)
        lake = LakeRows()
        rows, distinct = lake.distinct_event_ids()
        trades, volume, _ = Marts().poll()
        runs = stack.instance.get_runs(dg.RunsFilter(job_name="raw_ticks_job"))
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        records = [int(r.tags.get("stock_pipeline/records", 0)) for r in runs]
        legs = sensor_seconds(stack.instance)
        legs.update(run_legs(stack.instance))

    n = backlog.ticks
    lake_rate = rate(n, seen.lake_first, seen.lake_all)
    marts_rate = rate(n, seen.marts_first, seen.marts_all)
    for what, seconds in [
        (f"first lake rows ({seen.lake_first[1]:,})", seen.lake_first[0]),
        (f"all {n:,} in the lake", seen.lake_all),
        (f"first daily_prices rows ({seen.marts_first[1]:,})", seen.marts_first[0]),
        (f"all {n:,} in daily_prices (trade_count, volume)", seen.marts_all),
        ("latest_quotes at every symbol's last tick", seen.quotes_all),
    ]:
        print(f"  {what:<50} {seconds:6.1f} s")
    print(f"lake after its first rows: {ratios(lake_rate, put_rate)}")
    print(f"marts after their first rows: {ratios(marts_rate, put_rate)}")
    print(f"marts from the start of dagster dev: {ratios(n / seen.marts_all, put_rate)}")
    print(
        f"{len(runs)} raw_ticks_job runs ({len(failed)} failed), "
        f"records per run p50 {np.median(records):,.0f}, max {max(records):,}"
    )
    print("where the sensor and a raw_ticks_job run spend their time:")
    print_percentiles(legs)

    print(
        f"check: {n:,} put; lake {rows:,} rows, {distinct:,} distinct event ids; "
        f"daily_prices trade_count {trades:,}, volume {volume:,} of {backlog.volume:,}"
    )
    if not distinct == trades == n or volume != backlog.volume:
        raise SystemExit("FAILED: not every tick put is counted once")
    print("every tick put is counted once")


if __name__ == "__main__":
    main()
