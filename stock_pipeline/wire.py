"""The wire format (one Kinesis record = one tick) and the lake's `raw/ticks` schema.

See docs/architecture.md, "Wire format" and "Lake layout". Producer, ingest and the transform
that reads the lake all import from here.
"""

import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
SYMBOL_PATTERN = r"^[A-Z][A-Z0-9.\-]{0,9}$"
SOURCES = ("synthetic", "yfinance", "csv")
# A tick is ~200 bytes; anything this large is not a tick (Kinesis itself allows far more).
MAX_RECORD_BYTES = 4096
# The entry of each raw_ticks materialization that lists the lake objects it wrote: the next
# build of stg_lake__ticks reads exactly those (stock_pipeline/defs/transform/lake_objects.py).
TICK_OBJECTS = "tick_objects"

RAW_TICKS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("volume", pa.int64(), nullable=False),
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("sequence_number", pa.string(), nullable=False),
        pa.field("arrival_ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def encode_tick(tick: dict[str, Any]) -> bytes:
    """A tick as the UTF-8 JSON bytes of one Kinesis record."""
    return json.dumps(tick, separators=(",", ":"), allow_nan=False).encode()
