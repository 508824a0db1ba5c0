"""The moto emulator made safe and fast for a stream of millions of Kinesis records.

moto's shard numbers a put record as its highest sequence number plus one, unlocked: two
PutRecords calls served at once can give two records the same number, and the second silently
replaces the first; a read during a put can fail with HTTP 500. AWS has neither problem. The
emulator's server answers requests on threads, so its shards get one lock around writes and
reads.

moto also finds a shard's first and last sequence numbers by copying all its keys, and a read
by walking every record from the first: each put and each read costs the length of the shard,
so a backlog of a million ticks slows the emulator, not the pipeline, to a crawl. Its sequence
numbers are consecutive integers, so both are looked up directly instead.

`moto_server()` runs it, so patched, on loopback (moto's own default is every interface).
"""

import functools
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto.kinesis.models import Shard
from moto.server import ThreadedMotoServer

_LOCK = threading.RLock()


def _locked(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.patched = True
    return wrapper


def _first_sequence_number(shard: Shard) -> int:
    return next(iter(shard.records), 0)


def _last_sequence_number(shard: Shard) -> int:
    return next(reversed(shard.records), 0)


def _indexed_get_records(walk):
    """moto's `get_records`, reading the requested records by their sequence numbers."""

    @functools.wraps(walk)
    def get_records(shard: Shard, last_sequence_id: str, limit: int | None):
        first, last = _first_sequence_number(shard), _last_sequence_number(shard)
        if len(shard.records) != last - first + 1:  # not consecutive: moto's own walk
            return walk(shard, last_sequence_id, limit)
        after = int(last_sequence_id)
        start = max(after + 1, first)
        stop = last if limit is None else min(last, start + limit - 1)
        records = [shard.records[number] for number in range(start, stop + 1)]
        if not records:
            return [], after, 0
        behind = shard.records[last].created_at - records[-1].created_at
        return records, records[-1].sequence_number, int(behind * 1000)

    return get_records


def patch_kinesis_shards() -> None:
    """Idempotent: patch moto's Shard once per process."""
    if getattr(Shard.put_record, "patched", False):
        return
    Shard.get_min_sequence_number = _first_sequence_number
    Shard.get_max_sequence_number = _last_sequence_number
    Shard.get_records = _locked(_indexed_get_records(Shard.get_records))
    Shard.put_record = _locked(Shard.put_record)


def free_port() -> int:
    """A TCP port free on loopback at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """The emulator in this process on `host:port` (a free port when None); its URL."""
    patch_kinesis_shards()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def client(service: str, endpoint: str):
    """A boto3 client for the emulator at `endpoint` (it accepts any keys), whatever the
    environment points at."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
