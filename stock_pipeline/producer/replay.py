"""Put quarantined records back on the stream, after a rule or a producer was fixed.

Each record goes back as the bytes it arrived with, so a tick keeps its `event_id`: staging
counts it once even if it is replayed twice. Records that still break a rule return to
quarantine with their reason.
"""

import base64
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from datetime import date

from stock_pipeline.producer.kinesis import (
    MAX_BYTES_PER_CALL,
    MAX_RECORDS_PER_CALL,
    KinesisProducer,
)
from stock_pipeline.resources.aws import LakeResource

FALLBACK_PARTITION_KEY = "quarantine-replay"  # for a payload with no readable symbol


def _matches(reason: str, wanted: str | None) -> bool:
    # `missing_field` selects every `missing_field:<name>`.
    return wanted is None or reason == wanted or reason.startswith(f"{wanted}:")


def quarantined(lake: LakeResource, s3, since: date | None) -> Iterator[dict]:
    """Every quarantine line of arrival date `since` or later (all when None)."""
    prefix = lake.key("quarantine/ticks") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            partition = obj["Key"][len(prefix) :].split("/", 1)[0]  # dt=YYYY-MM-DD
            if since and date.fromisoformat(partition.removeprefix("dt=")) < since:
                continue
            body = s3.get_object(Bucket=lake.bucket, Key=obj["Key"])["Body"].read()
            for line in gzip.decompress(body).decode("utf-8").splitlines():
                yield json.loads(line)


def _entry(line: dict) -> dict:
    data = (
        line["payload"].encode("utf-8")
        if "payload" in line
        else base64.b64decode(line["payload_base64"])
    )
    try:
        symbol = json.loads(data).get("symbol")
    except (ValueError, AttributeError):
        symbol = None
    key = symbol if isinstance(symbol, str) and 0 < len(symbol) <= 256 else FALLBACK_PARTITION_KEY
    return {"Data": data, "PartitionKey": key}


def replay_quarantine(
    lake: LakeResource,
    s3,
    producer: KinesisProducer | None,
    reason: str | None = None,
    since: date | None = None,
) -> Counter:
    """Put the selected quarantined records back on the stream (none when `producer` is None,
    a dry run); the count per reason."""
    counts: Counter = Counter()
    batch: list[dict] = []
    size = 0
    for line in quarantined(lake, s3, since):
        if not _matches(line["reason"], reason):
            continue
        counts[line["reason"]] += 1
        if producer is None:
            continue
        entry = _entry(line)
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if batch and (len(batch) >= MAX_RECORDS_PER_CALL or size + entry_size > MAX_BYTES_PER_CALL):
            producer.put_entries(batch)
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        producer.put_entries(batch)
    return counts
