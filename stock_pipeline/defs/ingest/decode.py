"""Decode and validate Kinesis records as columns.

The hot path parses all records at once with pyarrow's JSON reader and validates them with one
DuckDB query. Only records the bulk parser refuses (rare: not JSON, wrong types, not UTF-8) are
looked at one by one, to name the reason. Nothing is dropped: every record comes out either as a
valid tick or as a quarantine row with a machine-readable reason.
"""

import io
import json
import math

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from stock_pipeline.wire import MAX_RECORD_BYTES, SCHEMA_VERSION, SOURCES, SYMBOL_PATTERN

# The wire fields as the JSON reader should type them (DESIGN.md, wire format).
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
# ISO-8601 with a UTC offset: the wire format requires one, so event time is unambiguous.
ISO_TIMESTAMP = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})"

# Reason for each record, first rule broken wins; null means valid.
_VALIDATE_SQL = f"""
with typed as (
    select *, try_cast(ts as timestamptz) as event_ts from parsed
)
select
    row,
    event_id,
    symbol,
    event_ts as ts,
    price,
    volume,
    bid,
    ask,
    source,
    schema_version::integer as schema_version,
    case
        {" ".join(f"when {f} is null then 'missing_field:{f}'" for f in REQUIRED)}
        when event_id = '' then 'missing_field:event_id'
        when not regexp_full_match(symbol, '{SYMBOL_PATTERN[1:-1]}') then 'bad_symbol'
        when event_ts is null or not regexp_full_match(ts, '{ISO_TIMESTAMP}') then 'bad_timestamp'
        when not isfinite(price) then 'non_finite_price'
        when price <= 0 then 'non_positive_price'
        when volume < 0 then 'negative_volume'
        when not coalesce(isfinite(bid) and bid > 0, true) then 'bad_bid'
        when not coalesce(isfinite(ask) and ask > 0, true) then 'bad_ask'
        when bid > ask then 'bid_above_ask'
        when source not in ({", ".join(f"'{s}'" for s in SOURCES)}) then 'bad_source'
        when schema_version <> {SCHEMA_VERSION} then 'unsupported_schema_version'
    end as reason
from typed
"""


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


def _not_utf8(column: pa.LargeBinaryArray) -> pa.BooleanArray:
    """Which payloads are not valid UTF-8 (the JSON reader does not check inside strings)."""
    try:
        column.cast(pa.large_string())  # validates the whole column at once: the usual case
        return pa.array([False] * len(column))
    except pa.ArrowInvalid:
        payloads = pa.table({"data": column})  # noqa: F841 (read by the DuckDB query below)
        with duckdb.connect() as con:
            query = "select try(decode(data)) is null from payloads"
            return con.execute(query).fetch_arrow_table().column(0).combine_chunks()


def decode_records(data: list[bytes], meta: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split raw records into (ticks, quarantine).

    `data` are the record payloads; `meta` has one row per record (shard_id, sequence_number,
    arrival_ts). Ticks have the wire fields typed plus the meta columns; quarantine rows have
    the meta columns, the raw `data` and a `reason`.
    """
    # One buffer of newline-terminated records serves both the JSON reader and, viewed as a
    # binary array of record+newline slices, the column checks: no per-record Arrow conversion.
    joined = b"\n".join(data) + b"\n"
    offsets = np.zeros(len(data) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, data), np.int64, len(data)) + 1, out=offsets[1:])
    column = pa.Array.from_buffers(
        pa.large_binary(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(joined)]
    )
    oversized = pc.greater(pc.binary_length(column), MAX_RECORD_BYTES + 1)
    not_utf8 = pc.and_(_not_utf8(column), pc.invert(oversized))
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
        parsed = parsed.sort_by("row")  # DuckDB keeps this order: preserve_insertion_order

    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        checked = con.execute(_VALIDATE_SQL).fetch_arrow_table()

    invalid = checked.filter(pc.is_valid(checked.column("reason")))
    for row, reason in zip(
        invalid.column("row").to_pylist(), invalid.column("reason").to_pylist(), strict=True
    ):
        reasons[row] = reason

    valid = checked.filter(pc.is_null(checked.column("reason")))
    ticks = valid.drop_columns(["row", "reason"])
    valid_meta = meta if valid.num_rows == meta.num_rows else meta.take(valid.column("row"))
    for name in meta.column_names:
        ticks = ticks.append_column(name, valid_meta.column(name))

    bad_rows = pa.array(sorted(reasons), pa.int64())
    quarantine = (
        meta.take(bad_rows)
        .append_column("data", pa.array([data[r] for r in bad_rows.to_pylist()], pa.binary()))
        .append_column("reason", pa.array([reasons[r] for r in bad_rows.to_pylist()], pa.string()))
    )
    return ticks, quarantine
