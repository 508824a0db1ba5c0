"""Decode and validate Kinesis records as columns.

The hot path parses all records at once with pyarrow's JSON reader and validates them with
pyarrow compute kernels. Only records the bulk parser refuses (rare: not JSON, wrong types,
not UTF-8) are looked at one by one, to name the reason. Nothing is dropped: every record
comes out either as a valid tick or as a quarantine row with a machine-readable reason.
"""

import functools
import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from stock_pipeline.settings import get_settings
from stock_pipeline.wire import MAX_RECORD_BYTES, SCHEMA_VERSION, SOURCES, SYMBOL_PATTERN

# The wire fields as the JSON reader should type them (docs/architecture.md, "Wire format").
WIRE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("symbol", pa.string()),
        ("ts", pa.string()),
        ("price", pa.float64()),
        ("volume", pa.int64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("source", pa.string()),
        ("schema_version", pa.int64()),
    ]
)
REQUIRED = ("event_id", "symbol", "ts", "price", "volume", "source", "schema_version")
_JSON_TYPES = {pa.string(): (str,), pa.float64(): (int, float), pa.int64(): (int,)}
_PARSE = pj.ParseOptions(explicit_schema=WIRE_SCHEMA, unexpected_field_behavior="ignore")
_INT64_MAX = 2**63 - 1
TIMESTAMP_UTC = pa.timestamp("us", tz="UTC")


def _cast_or_null(array: pa.Array, target: pa.DataType) -> pa.Array:
    """`array` cast to `target`, with the elements that cannot be cast as nulls.

    One cast of the whole array is the usual case; a refusal is bisected down to the culprits.
    """
    try:
        return pc.cast(array, target)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        if len(array) == 1:
            return pa.nulls(1, target)
        half = len(array) // 2
        return pa.concat_arrays(
            [_cast_or_null(array[:half], target), _cast_or_null(array[half:], target)]
        )


def _broken_rules(
    parsed: pa.Table, ts: pa.Array, latest_ts: pa.Array
) -> list[tuple[str, pa.Array]]:
    """(reason, which rows break the rule), in the order the rules are checked.

    `ts` is the event time parsed by Arrow's ISO-8601 reader into UTC: null where the string
    is not an ISO-8601 date and time with a UTC offset (Z, +HH:MM, +HHMM). `latest_ts` is the
    latest event time each row may carry (its arrival plus the allowed clock skew).
    """
    col = parsed.column
    rules = [(f"missing_field:{name}", pc.is_null(col(name))) for name in REQUIRED]
    rules += [
        ("missing_field:event_id", pc.equal(col("event_id"), "")),
        ("bad_symbol", pc.invert(pc.match_substring_regex(col("symbol"), SYMBOL_PATTERN))),
        ("bad_timestamp", pc.is_null(ts)),
        ("future_timestamp", pc.greater(ts, latest_ts)),
        ("non_finite_price", pc.invert(pc.is_finite(col("price")))),
        ("non_positive_price", pc.less_equal(col("price"), 0)),
        ("negative_volume", pc.less(col("volume"), 0)),
        ("bad_bid", pc.invert(pc.and_(pc.is_finite(col("bid")), pc.greater(col("bid"), 0)))),
        ("bad_ask", pc.invert(pc.and_(pc.is_finite(col("ask")), pc.greater(col("ask"), 0)))),
        ("bid_above_ask", pc.greater(col("bid"), col("ask"))),
        ("bad_source", pc.invert(pc.is_in(col("source"), pa.array(SOURCES)))),
        ("unsupported_schema_version", pc.not_equal(col("schema_version"), SCHEMA_VERSION)),
    ]
    # A comparison with a missing optional field (bid, ask) is null: not broken.
    return [(reason, pc.fill_null(broken, False)) for reason, broken in rules]


def _bulk_parse(lines: bytes, rows: np.ndarray, data: list[bytes]):
    """Parse `lines` (the records `rows`, one per line) with the JSON reader.

    Where the reader refuses a chunk, bisect it, so only the refused records are left for the
    one-by-one lane. Returns (tables with a `row` column, refused rows).
    """
    try:
        table = pj.read_json(io.BytesIO(lines), parse_options=_PARSE)
        # Every record opens with "{" and makes at least one row: equal counts mean one each.
        if table.num_rows == len(rows):
            return [table.append_column("row", pa.array(rows, pa.int64()))], []
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    if len(rows) == 1:
        return [], rows.tolist()
    tables, refused = [], []
    for half in np.array_split(rows, 2):
        more_tables, more_refused = _bulk_parse(b"\n".join(data[i] for i in half), half, data)
        tables += more_tables
        refused += more_refused
    return tables, refused


def _parse_one(payload: bytes) -> dict | str:
    """The typed wire fields of one record, or the reason it cannot be a tick."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        value = json.loads(text)
    except ValueError:
        return "not_json"
    if not isinstance(value, dict):
        return "not_object"
    fields = {}
    for field in WIRE_SCHEMA:
        item = value.get(field.name)
        if item is None:
            fields[field.name] = None
        elif (
            isinstance(item, bool)
            or not isinstance(item, _JSON_TYPES[field.type])
            or field.type == pa.int64()
            and abs(item) > _INT64_MAX
        ):
            return f"wrong_type:{field.name}"
        elif field.type == pa.float64() and isinstance(item, int) and abs(item) > 1e308:
            fields[field.name] = math.inf
        else:
            fields[field.name] = item
    return fields


def decode_records(
    data: list[bytes], meta: pa.Table, max_future_skew_seconds: float | None = None
) -> tuple[pa.Table, pa.Table]:
    """Split raw records into (ticks, quarantine).

    `data` are the record payloads; `meta` has one row per record (shard_id, sequence_number,
    arrival_ts). Ticks have the wire fields typed plus the meta columns; quarantine rows have
    the meta columns, the raw `data` and a `reason`. A tick whose event time is more than
    `max_future_skew_seconds` (default MAX_FUTURE_SKEW_SECONDS) after its arrival is
    quarantined as `future_timestamp`: no clock is that far off, the producer's is wrong.
    """
    if max_future_skew_seconds is None:
        max_future_skew_seconds = get_settings().max_future_skew_seconds
    # One buffer of newline-terminated records serves both the JSON reader and, viewed as a
    # binary array of record+newline slices, the column checks: no per-record Arrow conversion.
    joined = b"\n".join(data) + b"\n"
    offsets = np.zeros(len(data) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, data), np.int64, len(data)) + 1, out=offsets[1:])
    column = pa.Array.from_buffers(
        pa.large_binary(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(joined)]
    )
    oversized = pc.greater(pc.binary_length(column), MAX_RECORD_BYTES + 1)
    # The JSON reader does not check UTF-8 inside strings; a cast to string does.
    not_utf8 = pc.and_(pc.is_null(_cast_or_null(column, pa.large_string())), pc.invert(oversized))
    # A record that does not open with "{" (empty, blank, not an object) could make zero rows
    # in the line-based reader and shift the rest; it goes one by one.
    unframed = pc.invert(pc.starts_with(column, "{"))
    reasons: dict[int, str] = dict.fromkeys(pc.indices_nonzero(oversized).to_pylist(), "oversized")
    reasons.update(dict.fromkeys(pc.indices_nonzero(not_utf8).to_pylist(), "not_utf8"))
    rejected = pc.or_(oversized, not_utf8)
    one_by_one = pc.indices_nonzero(pc.and_(unframed, pc.invert(rejected))).to_pylist()
    if reasons or one_by_one:
        bulk_rows = pc.indices_nonzero(pc.invert(pc.or_(rejected, unframed))).to_numpy()
        bulk_lines = b"\n".join(data[i] for i in bulk_rows)
    else:  # the usual case: every record is one line of JSON
        bulk_rows, bulk_lines = np.arange(len(data)), joined
    tables, refused = _bulk_parse(bulk_lines, bulk_rows, data) if len(bulk_rows) else ([], [])

    parsed_one_by_one = []
    for row in refused + one_by_one:
        result = _parse_one(data[row])
        if isinstance(result, str):
            reasons[row] = result
        else:
            parsed_one_by_one.append({**result, "row": row})
    row_schema = WIRE_SCHEMA.append(pa.field("row", pa.int64()))
    tables.append(pa.Table.from_pylist(parsed_one_by_one, row_schema))
    parsed = pa.concat_tables(tables)
    if parsed_one_by_one:
        parsed = parsed.sort_by("row")

    ts = _cast_or_null(parsed.column("ts").combine_chunks(), TIMESTAMP_UTC)
    arrival = pc.cast(meta.column("arrival_ts").take(parsed.column("row")), TIMESTAMP_UTC)
    skew = pa.scalar(round(max_future_skew_seconds * 1e6), pa.duration("us"))
    rules = _broken_rules(parsed, ts, pc.add(arrival, skew))
    invalid = functools.reduce(pc.or_, (broken for _, broken in rules))
    if pc.any(invalid).as_py():
        unexplained = invalid
        for reason, broken in rules:  # the first rule a row breaks names it
            named = pc.and_(unexplained, broken)
            rows = parsed.column("row").filter(named).to_pylist()
            reasons.update(dict.fromkeys(rows, reason))
            unexplained = pc.and_(unexplained, pc.invert(named))

    valid = pc.invert(invalid)
    ticks = (
        parsed.set_column(parsed.schema.get_field_index("ts"), "ts", ts)
        .set_column(
            parsed.schema.get_field_index("schema_version"),
            "schema_version",
            pc.cast(parsed.column("schema_version"), pa.int32()),
        )
        .filter(valid)
    )
    rows = ticks.column("row")
    ticks = ticks.drop_columns(["row"])
    valid_meta = meta if ticks.num_rows == meta.num_rows else meta.take(rows)
    for name in meta.column_names:
        ticks = ticks.append_column(name, valid_meta.column(name))

    bad_rows = pa.array(sorted(reasons), pa.int64())
    quarantine = (
        meta.take(bad_rows)
        .append_column("data", pa.array([data[r] for r in bad_rows.to_pylist()], pa.binary()))
        .append_column("reason", pa.array([reasons[r] for r in bad_rows.to_pylist()], pa.string()))
    )
    return ticks, quarantine
