"""`stock-pipeline sql`: one query on the warehouse, printed as a table, CSV or JSON.

It reads the snapshot of the last complete build (or, with `--at`, the last one completed by then)
from a read-only attachment, so it runs beside the pipeline and never blocks it.
"""

import csv
import json
import shutil
import sys
from datetime import datetime

import duckdb

from stock_pipeline.resources.warehouse import WarehouseError, connect

# Rows the table format shows (DuckDB's renderer elides the middle of longer results).
TABLE_ROWS = 100


def _json_value(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class QueryError(RuntimeError):
    """The query cannot run; the message says why, in one line."""


def parse_time(value: str) -> datetime:
    """An ISO-8601 time with an offset (`Z` included), for `--at`."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise QueryError(
            f"--at {value!r} is not an ISO-8601 time with an offset, e.g. 2026-12-01T14:31:00Z"
        )
    return moment


def run_query(query: str, output_format: str = "table", at: datetime | None = None) -> None:
    """Print the result of `query` on standard output."""
    try:
        with connect(at=at) as con:
            relation = con.sql(query)
            if relation is not None:  # None: a statement with no result, such as SET
                print_relation(relation, output_format)
    except WarehouseError as err:
        raise QueryError(str(err)) from err
    except duckdb.Error as err:
        raise QueryError(str(err).strip().splitlines()[0]) from err


def print_relation(relation: duckdb.DuckDBPyRelation, output_format: str = "table") -> None:
    """`relation`'s rows on standard output as a table, CSV or JSON."""
    if output_format == "table":
        width = shutil.get_terminal_size().columns
        relation.show(max_rows=TABLE_ROWS, max_width=width, null_value="NULL")
        return
    columns, rows = relation.columns, relation.fetchall()
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:  # an array of objects, as DuckDB's own CLI prints with -json
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        json.dump(records, sys.stdout, default=_json_value)
        sys.stdout.write("\n")
