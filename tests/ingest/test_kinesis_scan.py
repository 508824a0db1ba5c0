"""The sensor's shard scan against the emulator: it pages up to its limit, and no further once
its deadline has passed."""

import time

from stock_pipeline.defs.ingest import kinesis as kinesis_reads

STREAM = "scan-test"


def test_a_scan_past_its_deadline_stops_paging_with_what_it_found(kinesis, monkeypatch):
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=STREAM)
    kinesis.put_records(
        StreamName=STREAM, Records=[{"Data": b"tick", "PartitionKey": str(n)} for n in range(30)]
    )
    [shard] = kinesis_reads.list_shards(kinesis, STREAM)
    monkeypatch.setattr(kinesis_reads, "MAX_RECORDS_PER_CALL", 10)  # three pages

    whole = kinesis_reads.scan_shard(kinesis, STREAM, shard, None, 100, time.monotonic() + 60)
    late = kinesis_reads.scan_shard(kinesis, STREAM, shard, None, 100, time.monotonic() - 1)
    rest = kinesis_reads.scan_shard(kinesis, STREAM, shard, late.last_sequence, 100)

    assert whole.count == 30
    assert late.count == 10 and late.first_sequence == whole.first_sequence
    assert rest.count == 20 and rest.last_sequence == whole.last_sequence
