"""The moto emulator made safe for concurrent Kinesis requests.

moto's shard numbers a put record as its highest sequence number plus one, unlocked: two
PutRecords calls served at once can give two records the same number, and the second silently
replaces the first; a read during a put can fail with HTTP 500. AWS has neither problem. The
emulator's server answers requests on threads, so its shards get one lock around writes and
reads.
"""

import functools
import threading

from moto.kinesis.models import Shard

_LOCK = threading.RLock()


def _locked(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.serialised = True
    return wrapper


def serialise_kinesis_shards() -> None:
    """Idempotent: patch moto's Shard once per process."""
    for name in ("put_record", "get_records"):
        method = getattr(Shard, name)
        if not getattr(method, "serialised", False):
            setattr(Shard, name, _locked(method))
