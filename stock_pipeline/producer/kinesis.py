"""Put ticks on the Kinesis stream with PutRecords, within the service limits.

Whole-call failures (throttling, 5xx) are retried by botocore's standard retry mode. A call that
succeeds can still reject some entries (ProvisionedThroughputExceeded, InternalFailure): only
those entries are re-sent, with exponential backoff and full jitter. A re-sent entry is the same
bytes, so its `event_id` is unchanged and staging de-duplicates it if both copies landed.
"""

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from stock_pipeline.wire import encode_tick

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024  # data + partition keys, per PutRecords call


@dataclass
class ProduceStats:
    sent: int = 0
    retried: int = 0
    calls: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.sent / max(time.monotonic() - self.started, 1e-9)


class PutRecordsFailed(RuntimeError):
    pass


def batch_entries(
    ticks: Iterable[dict], max_records: int = MAX_RECORDS_PER_CALL
) -> Iterator[list[dict]]:
    """Group ticks into PutRecords entries of at most `max_records` (500) records and 5 MiB."""
    max_records = min(max_records, MAX_RECORDS_PER_CALL)
    batch: list[dict] = []
    size = 0
    for tick in ticks:
        entry = {"Data": encode_tick(tick), "PartitionKey": tick["symbol"]}
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if batch and (len(batch) >= max_records or size + entry_size > MAX_BYTES_PER_CALL):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


class KinesisProducer:
    def __init__(
        self,
        client,
        stream_name: str,
        max_attempts: int = 8,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        max_in_flight: int = 1,
    ):
        self.client = client
        self.stream_name = stream_name
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.stats = ProduceStats()
        self.max_in_flight = max_in_flight
        self._stats_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_in_flight) if max_in_flight > 1 else None

    def put_ticks(self, ticks: Iterable[dict]) -> ProduceStats:
        """Put `ticks`; with `max_in_flight` > 1 they are split into that many PutRecords calls
        in flight at once (each call waits on the service's round trip, not on this process)."""
        if self._pool is None:
            for entries in batch_entries(ticks):
                self.put_entries(entries)
            return self.stats
        ticks = list(ticks)
        per_call = math.ceil(len(ticks) / self.max_in_flight) or 1
        list(self._pool.map(self.put_entries, batch_entries(ticks, per_call)))
        return self.stats

    def put_entries(self, entries: list[dict]) -> None:
        pending = entries
        for attempt in range(self.max_attempts):
            response = self.client.put_records(StreamName=self.stream_name, Records=pending)
            failed = [
                entry
                for entry, result in zip(pending, response["Records"], strict=True)
                if "ErrorCode" in result
            ]
            with self._stats_lock:
                self.stats.calls += 1
                self.stats.sent += len(pending) - len(failed)
            if not failed:
                return
            codes = {r["ErrorCode"] for r in response["Records"] if "ErrorCode" in r}
            log.warning(
                "%d of %d records rejected (%s); re-sending them",
                len(failed),
                len(pending),
                ", ".join(sorted(codes)),
            )
            with self._stats_lock:
                self.stats.retried += len(failed)
            pending = failed
            # Full jitter: spreads the retries of many producers over the backoff window.
            self.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))
        raise PutRecordsFailed(
            f"{len(pending)} records still rejected after {self.max_attempts} attempts"
        )
