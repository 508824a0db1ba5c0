"""Reading the ticks stream: shard discovery in resharding order, scans and exact range reads.

Sequence numbers are decimal strings of large integers; compare them as ints.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 10_000  # GetRecords limit
MAX_EMPTY_PAGES = 20  # AWS may return empty pages while behind; bound the walk per scan


class RangeUnavailableError(RuntimeError):
    """The stream no longer holds (all of) a range: trimmed past retention, or never existed."""


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parents: tuple[str, ...]
    closed: bool  # closed by a split or merge: it holds no records after its ending sequence


@dataclass
class ScanResult:
    """What a scan found after the cursor: the range to hand to a run, if any."""

    first_sequence: str | None = None
    last_sequence: str | None = None
    count: int = 0
    last_arrival: float | None = None  # epoch seconds of the last record's arrival
    millis_behind_latest: int = 0
    drained: bool = False  # a closed shard with nothing left after the cursor


def list_shards(client: Any, stream_name: str) -> list[Shard]:
    shards, token = [], None
    while True:
        page = (
            client.list_shards(NextToken=token)
            if token
            else client.list_shards(StreamName=stream_name)
        )
        for shard in page["Shards"]:
            parents = tuple(
                p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
            )
            closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            shards.append(Shard(shard["ShardId"], parents, closed))
        token = page.get("NextToken")
        if not token:
            return shards


def _iterator(client: Any, stream_name: str, shard_id: str, kind: str, sequence: str | None):
    kwargs = {"StartingSequenceNumber": sequence} if sequence else {}
    return client.get_shard_iterator(
        StreamName=stream_name, ShardId=shard_id, ShardIteratorType=kind, **kwargs
    )["ShardIterator"]


def scan_shard(
    client: Any,
    stream_name: str,
    shard: Shard,
    after: str | None,
    limit: int,
    deadline: float | None = None,
) -> ScanResult:
    """Find up to `limit` records after sequence `after` (from the oldest record if None), and
    stop paging once `time.monotonic()` passes `deadline`, with what the pages so far found."""
    kind = "AFTER_SEQUENCE_NUMBER" if after else "TRIM_HORIZON"
    iterator = _iterator(client, stream_name, shard.shard_id, kind, after)
    result = ScanResult()
    empty_pages = 0
    while iterator and result.count < limit and empty_pages < MAX_EMPTY_PAGES:
        page = client.get_records(
            ShardIterator=iterator, Limit=min(MAX_RECORDS_PER_CALL, limit - result.count)
        )
        records = page["Records"]
        result.millis_behind_latest = page.get("MillisBehindLatest", 0)
        if records:
            result.first_sequence = result.first_sequence or records[0]["SequenceNumber"]
            result.last_sequence = records[-1]["SequenceNumber"]
            result.last_arrival = records[-1]["ApproximateArrivalTimestamp"].timestamp()
            result.count += len(records)
        iterator = page.get("NextShardIterator")
        # AWS ends a closed shard with no next iterator; the emulator keeps returning one, so a
        # closed shard that reads empty and caught up is drained too.
        if iterator is None or (shard.closed and not records and not result.millis_behind_latest):
            result.drained = result.count == 0
            break
        if not records and not result.millis_behind_latest:
            break  # caught up with the open end of the shard
        if deadline is not None and time.monotonic() > deadline:
            break
        empty_pages += not records
    return result


def read_range(
    client: Any, stream_name: str, shard_id: str, first: str, last: str
) -> tuple[list[dict], int]:
    """Exactly the records of `shard_id` from `first` to `last` inclusive, and the lag.

    Raises RangeUnavailableError if the stream no longer holds the whole range.
    """
    first_int, last_int = int(first), int(last)
    records: list[dict] = []
    millis_behind = 0
    iterator = _iterator(client, stream_name, shard_id, "AT_SEQUENCE_NUMBER", first)
    while True:
        try:
            page = client.get_records(ShardIterator=iterator, Limit=MAX_RECORDS_PER_CALL)
        except client.exceptions.ExpiredIteratorException:
            # Iterators live five minutes; resume right after what we already hold.
            log.warning("shard %s: iterator expired mid-range; resuming", shard_id)
            resume = records[-1]["SequenceNumber"] if records else None
            kind = "AFTER_SEQUENCE_NUMBER" if resume else "AT_SEQUENCE_NUMBER"
            iterator = _iterator(client, stream_name, shard_id, kind, resume or first)
            continue
        millis_behind = page.get("MillisBehindLatest", 0)
        for record in page["Records"]:
            if int(record["SequenceNumber"]) > last_int:
                break
            records.append(record)
        iterator = page.get("NextShardIterator")
        done = records and int(records[-1]["SequenceNumber"]) >= last_int
        if done or not iterator or (not page["Records"] and not millis_behind):
            break
    held = [int(r["SequenceNumber"]) for r in (records[0], records[-1])] if records else []
    if held != [first_int, last_int]:
        raise RangeUnavailableError(
            f"shard {shard_id}: range {first}..{last} is no longer whole in the stream (read "
            f"{'..'.join(map(str, held)) or 'nothing'}); it was trimmed past retention. Lake "
            "objects written for it before are kept."
        )
    return records, millis_behind
