"""The producer batches within PutRecords limits and re-sends only rejected entries."""

import json
from datetime import UTC, datetime

import boto3

from stock_pipeline.defs.ingest.kinesis import list_shards
from stock_pipeline.producer.kinesis import (
    MAX_BYTES_PER_CALL,
    MAX_RECORDS_PER_CALL,
    KinesisProducer,
    batch_entries,
)
from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings


class RejectingKinesis:
    """The real client, except that the first call's every third entry is rejected by "AWS".

    Rejected entries are not sent, exactly as when Kinesis answers ProvisionedThroughputExceeded
    for them; the rest go to the emulator over HTTP.
    """

    def __init__(self, client):
        self.client = client
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName, Records):  # noqa: N803 (boto3's argument names)
        self.calls.append([r["Data"] for r in Records])
        if len(self.calls) > 1:
            return self.client.put_records(StreamName=StreamName, Records=Records)
        accepted = [r for i, r in enumerate(Records) if i % 3]
        sent = iter(self.client.put_records(StreamName=StreamName, Records=accepted)["Records"])
        results = [
            next(sent)
            if i % 3
            else {
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard",
            }
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def stream_event_ids(client) -> list[str]:
    ids = []
    for shard in list_shards(client, get_settings().ticks_stream):
        iterator = client.get_shard_iterator(
            StreamName=get_settings().ticks_stream,
            ShardId=shard.shard_id,
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            ids += [json.loads(r["Data"])["event_id"] for r in page["Records"]]
            if not page["Records"] and not page.get("MillisBehindLatest"):
                break
            iterator = page.get("NextShardIterator")
    return ids


def test_partial_failure_resends_only_failed_entries(provisioned):
    client = boto3.client("kinesis")
    rejecting = RejectingKinesis(client)
    producer = KinesisProducer(rejecting, get_settings().ticks_stream, sleep=lambda _: None)
    ticks = list(
        SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, tzinfo=UTC)).ticks(count=90)
    )
    stats = producer.put_ticks(ticks)

    first, second = rejecting.calls
    assert len(first) == 90
    assert second == [data for i, data in enumerate(first) if i % 3 == 0]  # only the rejected
    assert stats.sent == 90 and stats.retried == 30 and stats.calls == 2
    landed = stream_event_ids(client)
    assert sorted(landed) == sorted(t["event_id"] for t in ticks)  # each once, same ids


def test_batches_respect_service_limits():
    small = [{"symbol": "AAPL", "i": i} for i in range(1201)]
    assert [len(b) for b in batch_entries(small)] == [500, 500, 201]
    big = [{"symbol": "AAPL", "pad": "x" * 100_000} for _ in range(120)]
    batches = list(batch_entries(big))
    assert sum(len(b) for b in batches) == 120
    for batch in batches:
        size = sum(len(e["Data"]) + len(e["PartitionKey"]) for e in batch)
        assert size <= MAX_BYTES_PER_CALL and len(batch) <= MAX_RECORDS_PER_CALL
    assert len(batches) == 3


def test_calls_in_flight_at_once_put_every_tick_once(provisioned):
    client = boto3.client("kinesis")
    producer = KinesisProducer(client, get_settings().ticks_stream, max_in_flight=4)
    ticks = list(
        SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, tzinfo=UTC)).ticks(count=3000)
    )
    for start in range(0, len(ticks), 1000):
        producer.put_ticks(ticks[start : start + 1000])
    assert producer.stats.sent == 3000 and producer.stats.calls == 12  # 3 rounds of 4 calls
    assert sorted(stream_event_ids(client)) == sorted(t["event_id"] for t in ticks)
