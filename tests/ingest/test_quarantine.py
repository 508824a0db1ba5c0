"""Malformed records go to quarantine with a reason; good ones in the same batch all land."""

import base64
import gzip
import json
from datetime import UTC, datetime

import boto3

from stock_pipeline.producer.synthetic import SyntheticMarket
from stock_pipeline.settings import get_settings
from stock_pipeline.wire import encode_tick
from tests.helpers import query_lake

GOOD = {
    "event_id": "template",
    "symbol": "AAPL",
    "ts": "2024-03-05T15:00:00.250000+00:00",
    "price": 170.25,
    "volume": 100,
    "bid": 170.2,
    "ask": 170.3,
    "source": "synthetic",
    "schema_version": 1,
}


def tick_bytes(**changes) -> bytes:
    fields = {**GOOD, **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


# (payload, reason): one per kind of malformed record, at least the ten the contract names.
MALFORMED = [
    (b"this is not json", "not_json"),
    (b'{"event_id": "x1", "symbol": "AAPL", "price": ', "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (tick_bytes(event_id="x2", price=...), "missing_field:price"),
    (tick_bytes(event_id="x3", symbol=...), "missing_field:symbol"),
    (tick_bytes(event_id="x4", price="170.25"), "wrong_type:price"),
    (tick_bytes(event_id="x5", volume=1.5), "wrong_type:volume"),
    (tick_bytes(event_id="x6", price=-1.0), "non_positive_price"),
    (tick_bytes(event_id="x7", price=0), "non_positive_price"),
    (tick_bytes(event_id="x8", price=float("nan")), "non_finite_price"),
    (tick_bytes(event_id="x9", price=float("inf")), "non_finite_price"),
    (tick_bytes(event_id="x10", symbol="aapl"), "bad_symbol"),
    (tick_bytes(event_id="x11", symbol="TOOLONGSYMBOL"), "bad_symbol"),
    (tick_bytes(event_id="x12", ts="yesterday"), "bad_timestamp"),
    (tick_bytes(event_id="x13", ts="2024-02-30T15:00:00+00:00"), "bad_timestamp"),
    (tick_bytes(event_id="x14", ts="2024-03-05T15:00:00"), "bad_timestamp"),  # no offset
    (tick_bytes(event_id="x21", ts="2099-01-02T15:00:00+00:00"), "future_timestamp"),
    (tick_bytes(event_id="x15", bid=171.0, ask=170.0), "bid_above_ask"),
    (tick_bytes(event_id="x16", volume=-5), "negative_volume"),
    (tick_bytes(event_id="x17", source="bloomberg"), "bad_source"),
    (tick_bytes(event_id="x18", schema_version=2), "unsupported_schema_version"),
    (tick_bytes(event_id="x19", note="x" * 5000), "oversized"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b'{"event_id": "x20", "symbol": "\xff\xfe"}', "not_utf8"),
]


def read_quarantine() -> list[dict]:
    s3 = boto3.client("s3")
    bucket = get_settings().lake_bucket
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/ticks/").get("Contents", [])
    ]
    assert keys and all(k.endswith(".jsonl.gz") and "/dt=" in k and "/shard=" in k for k in keys)
    lines = []
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        lines += [json.loads(line) for line in body.decode().splitlines()]
    return lines


def test_malformed_records_are_quarantined_with_their_reason(ingest_ticks):
    good = list(
        SyntheticMarket(["AAPL", "MSFT"], start=datetime(2024, 3, 5, tzinfo=UTC)).ticks(count=300)
    )
    good.append({**GOOD, "event_id": "offset-ok", "ts": "2024-03-05T10:00:00-05:00"})
    # Interleave the bad among the good, all on the stream in one batch.
    records = [(encode_tick(t), t["symbol"]) for t in good]
    for i, (payload, _) in enumerate(MALFORMED):
        records.insert(i * 13, (payload, "AAPL"))
    ingest_ticks.put_raw(records)
    ingest_ticks.drain()

    landed = dict(query_lake("select event_id, ts from ticks"))
    assert set(landed) == {t["event_id"] for t in good}
    assert landed["offset-ok"] == datetime(2024, 3, 5, 15, tzinfo=UTC)  # offset honoured

    quarantined = read_quarantine()
    assert len(quarantined) == len(MALFORMED)
    found = []
    for line in quarantined:
        assert line["shard_id"] and line["sequence_number"] and line["arrival_ts"]
        raw = (
            line["payload"].encode()
            if "payload" in line
            else base64.b64decode(line["payload_base64"])
        )
        found.append((raw, line["reason"]))
    assert sorted(found) == sorted(MALFORMED)
    assert len({reason.split(":")[0] for _, reason in MALFORMED}) >= 10
