"""Splitting a shard mid-stream loses and doubles nothing; parents drain before children."""

from datetime import UTC, datetime

import boto3
import pytest
from moto.kinesis.models import Stream

from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from tests.helpers import query_lake


@pytest.fixture
def aws_resharding(monkeypatch: pytest.MonkeyPatch):
    """Make the in-process emulator reshard as AWS documents.

    moto keeps routing puts to a closed parent (the first shard whose hash range matches) and
    moves a split parent's records into its children. On AWS a closed shard takes no new
    records and keeps the ones it has until they expire.
    """
    route = Stream.get_shard_for_key
    split = Stream.split_shard

    def get_shard_for_key(self, partition_key, explicit_hash_key):
        every_shard = self.shards
        self.shards = {k: s for k, s in every_shard.items() if s.is_open}
        try:
            return route(self, partition_key, explicit_hash_key)
        finally:
            self.shards = every_shard

    def split_shard(self, shard_to_split, new_starting_hash_key):
        parent = self.shards[shard_to_split]
        records, parent.records = parent.records, type(parent.records)()
        split(self, shard_to_split, new_starting_hash_key)
        parent.records = records

    monkeypatch.setattr(Stream, "get_shard_for_key", get_shard_for_key)
    monkeypatch.setattr(Stream, "split_shard", split_shard)


def lake_event_ids() -> list[str]:
    rows = query_lake("select event_id, shard_id, sequence_number from ticks")
    # Each (shard, sequence) is one Kinesis record and lands in exactly one row.
    assert len({(r[1], r[2]) for r in rows}) == len(rows)
    return [r[0] for r in rows]


def test_split_shard_mid_stream(ingest_ticks, aws_resharding):
    kinesis = boto3.client("kinesis")
    stream = get_settings().ticks_stream
    market = SyntheticMarket(
        ["AAPL", "MSFT", "NVDA", "JPM", "XOM", "KO"], start=datetime(2024, 3, 5, 15, tzinfo=UTC)
    )
    before, unread, after = (list(market.ticks(count=n)) for n in (2000, 1000, 2000))

    ingest_ticks(before)  # consumed before the split
    ingest_ticks.put(unread)  # on the parent, not yet consumed when it closes
    parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
    middle = (
        int(parent["HashKeyRange"]["StartingHashKey"])
        + int(parent["HashKeyRange"]["EndingHashKey"])
    ) // 2
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle)
    )
    ingest_ticks(after)

    landed = lake_event_ids()
    assert len(landed) == 5000
    assert set(landed) == {t["event_id"] for t in before + unread + after}

    # Parent before children: no run reads a child until the parent's last range was handed out.
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    children = {s["ShardId"] for s in shards if s.get("ParentShardId") == parent["ShardId"]}
    assert len(children) == 2
    run_shards = [
        {r["shard_id"] for r in c["ops"]["raw_ticks"]["config"]["ranges"]}
        for c in ingest_ticks.run_configs
    ]
    last_parent = max(i for i, s in enumerate(run_shards) if parent["ShardId"] in s)
    first_child = min(i for i, s in enumerate(run_shards) if s & children)
    assert last_parent < first_child
