"""The warehouse as the server reads it: the last complete build, followed as new ones land.

`resources.warehouse.Reader` keeps one DuckDB database for the process and attaches each new
complete build (checked at most once a second); every request gets a cursor on the newest, so
all its queries see one micro-batch. What many requests would recompute from one build (its
tables, symbols, newest tick) is kept beside it, per build.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from stock_pipeline.resources.warehouse import (
    ALIAS,
    NO_BUILD_YET,
    Reader,
    Snapshot,
    WarehouseError,
)

# Builds whose facts are kept: the newest and those requests may still be reading.
KEEP = Reader.KEEP


@dataclass(frozen=True)
class SymbolSpan:
    symbol: str
    first_tick_ts: datetime | None
    last_tick_ts: datetime | None
    first_trade_date: date | None
    last_trade_date: date | None


class Pinned:
    """One complete build: cursors on it, and what its requests share, computed on first use."""

    def __init__(self, snapshot: Snapshot, reader: Reader):
        self.snapshot = snapshot
        self._reader = reader
        self._lock = threading.RLock()  # a fact may be computed from another
        self._facts: dict[str, object] = {}

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self._reader.cursor()
        try:
            # On this build even if a newer one landed since; in UTC wherever the server runs.
            cursor.execute(f"use {ALIAS}_{self.snapshot.snapshot_id}")
            cursor.execute("set timezone = 'UTC'")
            yield cursor
        finally:
            cursor.close()

    def memo(self, name: str, compute):
        """`compute(cursor)` on this build, once."""
        with self._lock:
            if name not in self._facts:
                with self.cursor() as cursor:
                    self._facts[name] = compute(cursor)
            return self._facts[name]

    def tables(self) -> frozenset[str]:
        return self.memo("tables", _tables)

    def symbols(self) -> dict[str, SymbolSpan]:
        return self.memo("symbols", lambda c: _symbols(c, self.tables()))

    def newest_arrival(self) -> datetime | None:
        """When the newest tick of this build arrived on the stream (Kinesis arrival time)."""
        return self.memo("newest_arrival", lambda c: _newest_arrival(c, self.tables()))


def _tables(cursor: duckdb.DuckDBPyConnection) -> frozenset[str]:
    rows = cursor.execute(
        "select table_name from duckdb_tables() where database_name = current_database()"
    ).fetchall()
    return frozenset(name for (name,) in rows)


def _newest_arrival(cursor: duckdb.DuckDBPyConnection, tables: frozenset[str]) -> datetime | None:
    if "stg_lake__ticks" not in tables:
        return None
    return cursor.execute("select max(arrival_ts) from stg_lake__ticks").fetchone()[0]


def _symbols(cursor: duckdb.DuckDBPyConnection, tables: frozenset[str]) -> dict[str, SymbolSpan]:
    parts = []
    if "stg_lake__ticks" in tables:
        parts.append(
            "select symbol, min(ts) as first_tick_ts, max(ts) as last_tick_ts,"
            " null::date as first_trade_date, null::date as last_trade_date"
            " from stg_lake__ticks group by symbol"
        )
    if "daily_history" in tables:
        parts.append(
            "select symbol, null::timestamptz, null::timestamptz,"
            " min(trade_date), max(trade_date) from daily_history group by symbol"
        )
    if not parts:
        return {}
    rows = cursor.execute(
        f"""
        select symbol, max(first_tick_ts), max(last_tick_ts),
            max(first_trade_date), max(last_trade_date)
        from ({" union all ".join(parts)})
        group by symbol
        order by symbol
        """
    ).fetchall()
    return {row[0]: SymbolSpan(*row) for row in rows}


class Warehouse:
    """The newest complete build, for the requests of one server process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._reader: Reader | None = None
        self._pinned: OrderedDict[int, Pinned] = OrderedDict()

    def pinned(self) -> Pinned:
        snapshot = self._open().snapshot()
        if snapshot is None:  # the catalog exists, but no build has completed yet
            raise WarehouseError(NO_BUILD_YET)
        with self._lock:
            pinned = self._pinned.get(snapshot.snapshot_id)
            if pinned is None:
                pinned = self._pinned[snapshot.snapshot_id] = Pinned(snapshot, self._reader)
                while len(self._pinned) > KEEP:
                    self._pinned.popitem(last=False)
            return pinned

    def _open(self) -> Reader:
        # Opened on first use, not at start-up: the server may start before the first build.
        with self._lock:
            if self._reader is None:
                self._reader = Reader()
            return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
