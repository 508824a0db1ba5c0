"""The micro-batch plan: which range of which shard the next run consumes, and the new cursor.

Pure: the stream, its shards and a `scan` callable in, the plan out. The sensor does the I/O
(describing the stream, listing and scanning shards) and turns the plan into a run request.

The cursor holds the stream it belongs to (ARN and creation time), for each shard the last
sequence number handed to a run (and its arrival time), plus the closed shards already drained:
`{"stream": {"arn", "created"}, "shards": {id: {"sequence", "arrival"}}, "drained": [ids]}`.
Cursors written before the stream was recorded lack "stream" and belong to the current one.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from stock_pipeline.defs.ingest.assets import ShardRange
from stock_pipeline.defs.ingest.kinesis import ScanResult, Shard


class CheckpointGoneError(Exception):
    """The stream no longer holds the checkpoint a scan started after (trimmed past retention)."""


# scan(shard, after, limit): up to `limit` records after sequence `after` (None: the oldest
# record held). Raises CheckpointGoneError when `after` is no longer in the stream.
Scan = Callable[[Shard, str | None, int], ScanResult]


@dataclass(frozen=True)
class Stream:
    arn: str
    created: float  # epoch seconds: a re-created stream reuses its name, shard ids and sequences
    retention_hours: int

    @classmethod
    def from_summary(cls, summary: dict) -> "Stream":
        """From Kinesis' DescribeStreamSummary `StreamDescriptionSummary`."""
        return cls(
            arn=summary["StreamARN"],
            created=summary["StreamCreationTimestamp"].timestamp(),
            retention_hours=summary["RetentionPeriodHours"],
        )

    @property
    def identity(self) -> dict:
        return {"arn": self.arn, "created": self.created}


@dataclass
class Cursor:
    stream: dict | None = None
    shards: dict[str, dict] = field(default_factory=dict)  # id -> {"sequence", "arrival"}
    drained: list[str] = field(default_factory=list)

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        state = json.loads(text) if text else {}
        return cls(state.get("stream"), state.get("shards", {}), state.get("drained", []))

    def dumps(self) -> str:
        return json.dumps({"stream": self.stream, "shards": self.shards, "drained": self.drained})


@dataclass(frozen=True)
class Plan:
    stream: Stream
    ranges: list[ShardRange]
    records: int
    cursor: Cursor
    logs: list[tuple[int, str]]  # (logging level, message), in the order they happened

    @property
    def skip_reason(self) -> str | None:
        return None if self.ranges else "no new records on the stream"

    @property
    def run_key(self) -> str:
        # A re-created stream reuses shard ids and sequence numbers: its ranges need their own keys.
        canonical = json.dumps(
            [self.stream.identity, [r.model_dump() for r in self.ranges]], sort_keys=True
        )
        return "kinesis-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def plan(
    cursor: Cursor,
    stream: Stream,
    shards: list[Shard],
    scan: Scan,
    max_records: int,
    now: float,
    stream_name: str,
) -> Plan:
    """The ranges for one run, scanning parents before children, and the cursor moved past
    exactly those ranges. At most `max_records` (and one a shard), split evenly over the pending
    shards; what a shard does not hold goes to those that hold more."""
    logs: list[tuple[int, str]] = []
    if cursor.stream not in (None, stream.identity):
        logs.append(
            (
                logging.ERROR,
                f"STREAM CHANGED: {stream_name} is not the stream this cursor was written "
                f"for (was {cursor.stream}, now {stream.identity}): it was re-created, or the "
                "emulator restarted. Reading the new stream from its oldest record "
                "(TRIM_HORIZON); records the old stream held and no run consumed are gone "
                "with it.",
            )
        )
        cursor = Cursor()
    checkpoints = dict(cursor.shards)
    known = {shard.shard_id for shard in shards}
    # A parent that aged out of the stream (past retention) counts as drained.
    drained = {shard_id for shard_id in cursor.drained if shard_id in known}

    for shard_id, checkpoint in checkpoints.items():
        age_hours = (now - checkpoint["arrival"]) / 3600
        if shard_id in known and shard_id not in drained and age_hours > stream.retention_hours:
            logs.append(
                (
                    logging.ERROR,
                    f"DATA LOSS: shard {shard_id} checkpoint is {age_hours:.1f} h old, beyond "
                    f"the stream's {stream.retention_hours} h retention; records after sequence "
                    f"{checkpoint['sequence']} may have been trimmed before they were consumed.",
                )
            )

    # Shard ids grow as shards are created, so parents sort before their children and a parent
    # drained in this loop frees its children in the same evaluation.
    pending = sorted((s for s in shards if s.shard_id not in drained), key=lambda s: s.shard_id)
    found: dict[str, tuple[Shard, ScanResult, int]] = {}  # shard id -> (shard, scan, its share)
    records = 0
    for index, shard in enumerate(pending):
        if not all(parent in drained or parent not in known for parent in shard.parents):
            continue  # resharding: a child waits until its parents are drained
        # What the shards before it left, split over it and those after it.
        share = max(1, (max_records - records) // (len(pending) - index))
        after = checkpoints.get(shard.shard_id, {}).get("sequence")
        try:
            result = scan(shard, after, share)
        except CheckpointGoneError as err:
            logs.append(
                (
                    logging.ERROR,
                    f"DATA LOSS: shard {shard.shard_id} checkpoint {after} is no longer in the "
                    f"stream ({err}); resuming at the oldest record still held.",
                )
            )
            result = scan(shard, None, share)
        if result.count:
            records += result.count
            found[shard.shard_id] = (shard, result, share)
        elif result.drained:
            drained.add(shard.shard_id)
            logs.append(
                (logging.INFO, f"shard {shard.shard_id} is closed and drained; children may start")
            )

    # A shard that filled its share may hold more: it also gets what the shards after it left.
    for shard_id, (shard, result, share) in found.items():
        left = max_records - records
        if left <= 0:
            break
        if result.count < share:
            continue
        try:
            more = scan(shard, result.last_sequence, left)
        except CheckpointGoneError:
            continue  # trimmed since the scan above: this run keeps what that scan found
        if more.count:
            records += more.count
            found[shard_id] = (
                shard,
                replace(
                    result,
                    last_sequence=more.last_sequence,
                    last_arrival=more.last_arrival,
                    count=result.count + more.count,
                ),
                share,
            )

    ranges = [
        ShardRange(
            shard_id=shard_id,
            first_sequence=result.first_sequence,
            last_sequence=result.last_sequence,
        )
        for shard_id, (_, result, _) in found.items()
    ]
    for shard_id, (_, result, _) in found.items():
        checkpoints[shard_id] = {"sequence": result.last_sequence, "arrival": result.last_arrival}

    return Plan(
        stream=stream,
        ranges=ranges,
        records=records,
        cursor=Cursor(stream.identity, checkpoints, sorted(drained)),
        logs=logs,
    )
