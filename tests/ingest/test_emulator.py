"""The emulator's indexed shard reads return what moto's own walk returns, and concurrent puts
lose nothing."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from moto.kinesis.models import Shard

from stock_pipeline.emulator import patch_kinesis_shards


@pytest.fixture
def shard() -> Shard:
    patch_kinesis_shards()
    shard = Shard(0, starting_hash=0, ending_hash=2**128 - 1)
    for n in range(40):
        shard.put_record(f"key-{n % 3}", f"data-{n}", str(n))
    return shard


@pytest.mark.parametrize("after", ["0", "1", "17", "39", "40", "1000"])
@pytest.mark.parametrize("limit", [None, 1, 5, 100])
def test_indexed_read_equals_moto_walk(shard: Shard, after: str, limit: int | None):
    walk = Shard.get_records.__wrapped__.__wrapped__  # moto's own, under the lock and the index
    indexed_records, indexed_last, _ = shard.get_records(after, limit)
    walked_records, walked_last, _ = walk(shard, after, limit)
    assert [r.sequence_number for r in indexed_records] == [
        r.sequence_number for r in walked_records
    ]
    assert indexed_last == walked_last
    assert shard.get_max_sequence_number() == 40
    assert shard.get_min_sequence_number() == 1


def test_a_shard_without_records_reads_nothing():
    patch_kinesis_shards()
    empty = Shard(1, starting_hash=0, ending_hash=2**128 - 1)
    assert empty.get_records("0", 10) == ([], 0, 0)
    assert empty.get_max_sequence_number() == 0


def test_concurrent_puts_over_http_are_each_read_once(kinesis):
    kinesis.create_stream(StreamName="concurrent", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="concurrent")

    def put(call: int) -> None:
        entries = [{"Data": f"{call}-{n}".encode(), "PartitionKey": "k"} for n in range(200)]
        assert (
            kinesis.put_records(StreamName="concurrent", Records=entries)["FailedRecordCount"] == 0
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(16)))

    shard_id = kinesis.list_shards(StreamName="concurrent")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="concurrent", ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    read = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=500)
        read += [record["Data"].decode() for record in page["Records"]]
        if not page["Records"]:
            break
        iterator = page["NextShardIterator"]
    assert sorted(read) == sorted(f"{call}-{n}" for call in range(16) for n in range(200))
