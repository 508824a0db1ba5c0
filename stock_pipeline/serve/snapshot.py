"""One warehouse connection per published snapshot, shared by every request.

Opening the warehouse costs far more than a query, so the server keeps one connection pinned to
the last complete build and hands each request a cursor on it. Every query of a request sees the
same snapshot; the server moves to a new one when the pipeline publishes it.
"""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import duckdb

# How often the server asks whether a newer build was published.
CHECK_EVERY_SECONDS = 1.0


class WarehouseError(Exception):
    """The warehouse cannot be read: no complete build yet, or its catalog cannot be opened."""


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    built_at: datetime


def published_snapshot() -> Snapshot | None:
    path = Path(os.environ["DUCKDB_DATABASE"])
    if not path.exists():
        return None
    stat = path.stat()
    return Snapshot(stat.st_mtime_ns, datetime.fromtimestamp(stat.st_mtime, UTC))


def connect() -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(os.environ["DUCKDB_DATABASE"], read_only=True)
    except duckdb.Error as err:
        raise WarehouseError(f"DUCKDB_DATABASE: {err}") from err


@dataclass(frozen=True)
class SymbolSpan:
    symbol: str
    first_tick_ts: datetime | None
    last_tick_ts: datetime | None
    first_trade_date: object | None
    last_trade_date: object | None


class Pinned:
    """A connection on one snapshot, and what every request on it would otherwise recompute."""

    def __init__(self, con: duckdb.DuckDBPyConnection, snapshot: Snapshot):
        self.con = con
        self.snapshot = snapshot
        self._catalog, self._schema = con.execute(
            "select current_database(), current_schema()"
        ).fetchone()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        # A cursor is a connection of its own: it starts on the default catalog and time zone.
        cursor = self.con.cursor()
        cursor.execute(f"use {_quote(self._catalog)}.{_quote(self._schema)}")
        cursor.execute("set TimeZone = 'UTC'")
        return cursor

    @cached_property
    def tables(self) -> frozenset[str]:
        rows = self.cursor().execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = ?"
            " union all "
            "select view_name from duckdb_views() where database_name = ? and schema_name = ?",
            [self._catalog, self._schema, self._catalog, self._schema],
        )
        return frozenset(name for (name,) in rows.fetchall())

    @cached_property
    def newest_arrival(self) -> datetime | None:
        """When the newest tick in this snapshot arrived on the stream (Kinesis arrival time)."""
        if "stg_lake__ticks" not in self.tables:
            return None
        (newest,) = self.cursor().execute("select max(arrival_ts) from stg_lake__ticks").fetchone()
        return newest

    @cached_property
    def symbols(self) -> dict[str, SymbolSpan]:
        parts = []
        if "stg_lake__ticks" in self.tables:
            parts.append(
                "select symbol, min(ts) as first_tick_ts, max(ts) as last_tick_ts,"
                " null::date as first_trade_date, null::date as last_trade_date"
                " from stg_lake__ticks group by symbol"
            )
        if "daily_history" in self.tables:
            parts.append(
                "select symbol, null::timestamptz, null::timestamptz,"
                " min(trade_date), max(trade_date) from daily_history group by symbol"
            )
        if not parts:
            return {}
        rows = self.cursor().execute(
            f"""
            select symbol, max(first_tick_ts), max(last_tick_ts),
                max(first_trade_date), max(last_trade_date)
            from ({" union all ".join(parts)})
            group by symbol
            order by symbol
            """
        )
        return {row[0]: SymbolSpan(*row) for row in rows.fetchall()}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Warehouse:
    """The pinned connection of the newest published snapshot, re-checked at most once a second."""

    def __init__(self, check_every: float = CHECK_EVERY_SECONDS):
        self._check_every = check_every
        self._lock = threading.Lock()
        self._pinned: Pinned | None = None
        self._checked_at = float("-inf")

    def pinned(self) -> Pinned:
        with self._lock:
            if time.monotonic() - self._checked_at >= self._check_every:
                self._refresh()
            if self._pinned is None:
                raise WarehouseError("the warehouse has no complete build yet")
            return self._pinned

    def _refresh(self) -> None:
        snapshot = published_snapshot()
        self._checked_at = time.monotonic()
        if snapshot is None or (self._pinned and self._pinned.snapshot == snapshot):
            return
        # The previous connection closes once the requests still using it let it go.
        self._pinned = Pinned(connect(), snapshot)

    @contextmanager
    def cursor(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, Pinned]]:
        pinned = self.pinned()
        cursor = pinned.cursor()
        try:
            yield cursor, pinned
        finally:
            cursor.close()
