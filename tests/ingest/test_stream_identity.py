"""A stream that is not the cursor's (re-created, a new emulator) is read from its beginning."""

import json
from datetime import UTC, datetime

import boto3

from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from tests.helpers import query_lake


def test_recreated_stream_is_read_from_trim_horizon(ingest_ticks):
    kinesis = boto3.client("kinesis")
    stream = get_settings().ticks_stream
    ticks = list(
        SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, 15, tzinfo=UTC)).ticks(200)
    )
    ingest_ticks(ticks[:150])
    first_identity = json.loads(ingest_ticks.cursor)["stream"]

    # The emulator restarted: same name, same shard ids, sequence numbers from the start again,
    # lower than the cursor's checkpoints.
    kinesis.delete_stream(StreamName=stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=stream)
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    ingest_ticks(ticks[150:])

    # Both streams' ranges are in the lake, once each: the new stream's "1".."n" ranges did not
    # overwrite the old stream's objects of the same sequence numbers.
    assert sorted(query_lake("select event_id from ticks")) == sorted(
        (t["event_id"],) for t in ticks
    )
    assert json.loads(ingest_ticks.cursor)["stream"] != first_identity
