"""Bulk pulls: the same rows as the JSON responses, as CSV or Parquet."""

import csv
import io
from datetime import date, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import Response

Format = Literal["json", "csv", "parquet"]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def file_response(
    rows: pa.Table, fmt: Format, name: str, headers: dict[str, str] | None = None
) -> Response:
    """`rows` as a CSV (ISO-8601 times, empty for null) or Parquet (the marts' types) file."""
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(rows, buffer)
        body = buffer.getvalue()
    else:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows.column_names)
        for row in rows.to_pylist():
            writer.writerow(_csv_value(value) for value in row.values())
        body = out.getvalue().encode()
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    return Response(body, media_type=CONTENT_TYPES[fmt], headers={**disposition, **(headers or {})})


def _csv_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)  # every digit: the CSV reads back to the same double
    return "" if value is None else value
