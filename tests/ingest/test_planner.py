"""The micro-batch plan, without an emulator: a stream of shards held in memory."""

import json
import logging
from dataclasses import dataclass, field

import pytest

from stock_pipeline.defs.ingest.kinesis import ScanResult, Shard
from stock_pipeline.defs.ingest.planner import CheckpointGoneError, Cursor, Plan, Stream, plan

NOW = 1_700_000_000.0
STREAM = Stream(
    arn="arn:aws:kinesis:us-east-1:000000000000:stream/stock-ticks",
    created=NOW - 86_400,
    retention_hours=24,
)


@dataclass
class FakeShard:
    """What one shard holds: consecutive sequence numbers from `oldest` (older ones trimmed)."""

    shard: Shard
    count: int = 0
    oldest: int = 1
    arrival: float = NOW  # arrival time of every record

    def scan(self, after: str | None, limit: int) -> ScanResult:
        if after is not None and int(after) < self.oldest - 1:
            raise CheckpointGoneError(f"sequence {after} is trimmed")
        start = self.oldest if after is None else int(after) + 1
        stop = min(self.oldest + self.count - 1, start + limit - 1)
        if stop < start:
            return ScanResult(drained=self.shard.closed)
        return ScanResult(str(start), str(stop), stop - start + 1, self.arrival)


@dataclass
class FakeStream:
    shards: list[FakeShard] = field(default_factory=list)
    stream: Stream = STREAM

    @classmethod
    def holding(cls, *counts: int) -> "FakeStream":
        """Open shards shardId-000000000000, -1, ... holding `counts` records."""
        stream = cls()
        for index, count in enumerate(counts):
            stream.add(f"shardId-{index:012d}", count)
        return stream

    def add(self, shard_id: str, count: int, parents=(), closed=False, **held) -> None:
        self.shards.append(FakeShard(Shard(shard_id, tuple(parents), closed), count, **held))

    def plan(self, cursor: Cursor | None = None, max_records: int = 1000) -> Plan:
        by_id = {held.shard.shard_id: held for held in self.shards}
        return plan(
            cursor or Cursor(),
            self.stream,
            [held.shard for held in self.shards],
            lambda shard, after, limit: by_id[shard.shard_id].scan(after, limit),
            max_records=max_records,
            now=NOW,
            stream_name="stock-ticks",
        )


def ranges(result: Plan) -> dict[str, tuple[int, int]]:
    return {r.shard_id: (int(r.first_sequence), int(r.last_sequence)) for r in result.ranges}


def messages(result: Plan, level: int) -> list[str]:
    return [message for lvl, message in result.logs if lvl == level]


def test_first_plan_reads_each_shard_from_its_oldest_record():
    stream = FakeStream()
    stream.add("shardId-000000000000", 30)
    stream.add("shardId-000000000001", 5, oldest=100)

    result = stream.plan()

    assert ranges(result) == {"shardId-000000000000": (1, 30), "shardId-000000000001": (100, 104)}
    assert result.records == 35 and result.skip_reason is None and result.logs == []
    assert result.cursor == Cursor(
        STREAM.identity,
        {
            "shardId-000000000000": {"sequence": "30", "arrival": NOW},
            "shardId-000000000001": {"sequence": "104", "arrival": NOW},
        },
        [],
    )


def test_no_new_records_skips_and_keeps_the_cursor():
    stream = FakeStream()
    stream.add("shardId-000000000000", 30)
    cursor = stream.plan().cursor

    result = stream.plan(cursor)

    assert result.ranges == [] and result.records == 0
    assert result.skip_reason == "no new records on the stream"
    assert result.cursor.dumps() == cursor.dumps()


def test_budget_is_split_over_the_pending_shards_and_the_rest_waits():
    stream = FakeStream.holding(20, 20, 20)

    first = stream.plan(max_records=30)
    second = stream.plan(first.cursor, max_records=30)

    expected = {f"shardId-00000000000{i}": (1, 10) for i in range(3)}
    assert ranges(first) == expected and first.records == 30
    assert ranges(second) == {shard: (11, 20) for shard in expected}
    assert stream.plan(second.cursor, max_records=30).skip_reason is not None


@pytest.mark.parametrize("empty", [0, 1])
def test_what_an_empty_shard_leaves_goes_to_the_shard_with_records(empty):
    stream = FakeStream.holding(*(0 if index == empty else 100 for index in range(2)))

    result = stream.plan(max_records=30)

    assert ranges(result) == {f"shardId-00000000000{1 - empty}": (1, 30)}
    assert result.records == 30
    assert result.cursor.shards[f"shardId-00000000000{1 - empty}"]["sequence"] == "30"


def test_shards_short_of_their_share_leave_it_to_the_others():
    stream = FakeStream.holding(100, 4, 100)

    result = stream.plan(max_records=30)

    # 10 each, then shard 2 gets the 6 shard 1 left.
    assert ranges(result) == {
        "shardId-000000000000": (1, 10),
        "shardId-000000000001": (1, 4),
        "shardId-000000000002": (1, 16),
    }
    assert result.records == 30


def test_budget_is_at_least_one_record_a_shard():
    stream = FakeStream()
    stream.add("shardId-000000000000", 5)
    stream.add("shardId-000000000001", 5)

    assert ranges(stream.plan(max_records=1)) == {
        "shardId-000000000000": (1, 1),
        "shardId-000000000001": (1, 1),
    }


def split_stream(parent_left: int) -> FakeStream:
    """shardId-0 split into shardId-1 and shardId-2; the parent still holds `parent_left`."""
    stream = FakeStream()
    stream.add("shardId-000000000000", parent_left, closed=True)
    stream.add("shardId-000000000001", 7, parents=["shardId-000000000000"])
    stream.add("shardId-000000000002", 9, parents=["shardId-000000000000"])
    return stream


def test_children_wait_until_their_parent_is_drained():
    stream = split_stream(parent_left=4)

    first = stream.plan()
    second = stream.plan(first.cursor)

    assert ranges(first) == {"shardId-000000000000": (1, 4)}
    assert first.cursor.drained == []
    # The parent reads empty and closed: drained, and its children start in the same plan.
    assert ranges(second) == {"shardId-000000000001": (1, 7), "shardId-000000000002": (1, 9)}
    assert second.cursor.drained == ["shardId-000000000000"]
    assert messages(second, logging.INFO) == [
        "shard shardId-000000000000 is closed and drained; children may start"
    ]


def test_a_drained_parent_is_not_scanned_again_and_frees_the_whole_budget():
    stream = split_stream(parent_left=0)
    first = stream.plan(max_records=30)  # three pending shards: 10 records each
    stream.shards[1].count = stream.shards[2].count = 40

    second = stream.plan(first.cursor, max_records=30)  # two pending shards: 15 each

    assert ranges(first) == {"shardId-000000000001": (1, 7), "shardId-000000000002": (1, 9)}
    assert ranges(second) == {"shardId-000000000001": (8, 22), "shardId-000000000002": (10, 24)}
    assert second.cursor.drained == ["shardId-000000000000"]
    assert messages(second, logging.INFO) == []


def test_parent_aged_out_of_the_stream_counts_as_drained():
    stream = split_stream(parent_left=0)
    del stream.shards[0]  # past retention, ListShards no longer returns it

    result = stream.plan(Cursor(STREAM.identity, {}, ["shardId-000000000000"]))

    assert ranges(result) == {"shardId-000000000001": (1, 7), "shardId-000000000002": (1, 9)}
    assert result.cursor.drained == []  # only shards the stream still has are kept


def test_checkpoint_older_than_retention_is_reported_as_data_loss():
    stream = FakeStream()
    stream.add("shardId-000000000000", 50)
    old = {"sequence": "10", "arrival": NOW - 30 * 3600}

    result = stream.plan(Cursor(STREAM.identity, {"shardId-000000000000": old}, []))

    assert ranges(result) == {"shardId-000000000000": (11, 50)}
    assert messages(result, logging.ERROR) == [
        "DATA LOSS: shard shardId-000000000000 checkpoint is 30.0 h old, beyond the stream's "
        "24 h retention; records after sequence 10 may have been trimmed before they were "
        "consumed."
    ]


def test_checkpoint_no_longer_in_the_stream_resumes_at_the_oldest_record():
    stream = FakeStream()
    stream.add("shardId-000000000000", 20, oldest=500)
    gone = {"sequence": "10", "arrival": NOW - 3600}

    result = stream.plan(Cursor(STREAM.identity, {"shardId-000000000000": gone}, []))

    assert ranges(result) == {"shardId-000000000000": (500, 519)}
    assert result.cursor.shards["shardId-000000000000"]["sequence"] == "519"
    assert messages(result, logging.ERROR) == [
        "DATA LOSS: shard shardId-000000000000 checkpoint 10 is no longer in the stream "
        "(sequence 10 is trimmed); resuming at the oldest record still held."
    ]


def test_another_stream_is_read_from_its_oldest_record():
    stream = FakeStream()
    stream.add("shardId-000000000000", 5)
    old_stream = {"arn": STREAM.arn, "created": STREAM.created - 3600}
    cursor = Cursor(
        old_stream, {"shardId-000000000000": {"sequence": "900", "arrival": NOW}}, ["x"]
    )

    result = stream.plan(cursor)

    assert ranges(result) == {"shardId-000000000000": (1, 5)}
    assert result.cursor.stream == STREAM.identity and result.cursor.drained == []
    (error,) = messages(result, logging.ERROR)
    assert error.startswith("STREAM CHANGED: stock-ticks is not the stream this cursor was")
    assert str(old_stream) in error and str(STREAM.identity) in error


def test_run_key_depends_on_the_stream_and_the_ranges():
    stream = FakeStream()
    stream.add("shardId-000000000000", 5)
    recreated = FakeStream(stream.shards, Stream(STREAM.arn, STREAM.created + 1, 24))

    # The derivation is part of the contract: Dagster skips a run key it launched before.
    assert stream.plan().run_key == "kinesis-7c7c25e6f9e01b6477afb6891bc6e931"
    assert stream.plan().run_key == stream.plan().run_key
    assert recreated.plan().run_key != stream.plan().run_key
    assert stream.plan(max_records=2).run_key != stream.plan().run_key


def test_cursor_round_trip_keeps_the_format_cursors_were_written_in():
    written = json.dumps(
        {
            "stream": STREAM.identity,
            "shards": {"shardId-000000000001": {"sequence": "42", "arrival": NOW - 60}},
            "drained": ["shardId-000000000000"],
        }
    )

    cursor = Cursor.loads(written)

    assert cursor.dumps() == written
    assert cursor.shards["shardId-000000000001"] == {"sequence": "42", "arrival": NOW - 60}
    assert Cursor.loads(None) == Cursor() and Cursor.loads(Cursor().dumps()) == Cursor()


def test_cursor_written_before_the_stream_was_recorded_belongs_to_this_stream():
    stream = FakeStream()
    stream.add("shardId-000000000000", 50)
    written = json.dumps(
        {"shards": {"shardId-000000000000": {"sequence": "40", "arrival": NOW}}, "drained": []}
    )

    result = stream.plan(Cursor.loads(written))

    assert ranges(result) == {"shardId-000000000000": (41, 50)} and result.logs == []
    assert json.loads(result.cursor.dumps())["stream"] == STREAM.identity


@pytest.mark.parametrize("closed", [False, True])
def test_a_shard_with_records_left_is_never_drained(closed):
    stream = FakeStream()
    stream.add("shardId-000000000000", 3, closed=closed)

    result = stream.plan()

    assert ranges(result) == {"shardId-000000000000": (1, 3)} and result.cursor.drained == []
