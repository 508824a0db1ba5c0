"""The warehouse: a DuckLake that dbt writes and every reader attaches read-only.

A DuckLake is Parquet data files (`WAREHOUSE_DATA_PATH`: the lake bucket's `warehouse/` prefix on
AWS, local disk under `make dev`) and a catalog database (`WAREHOUSE_CATALOG`: `sqlite:<path>`, or
`postgres:<libpq string>` when several hosts share it). Every commit is a snapshot; a reader sees
one snapshot for as long as it keeps its connection, so it never sees half a commit and never
blocks a writer (docs/architecture.md, "Warehouse").

dbt commits each model on its own. Its `on-run-end` hook marks the snapshot of each complete build
(`publish_build` in dbt_project/macros/warehouse.sql); readers pin that one, so `latest_quotes` and
`minute_bars` always come from the same micro-batch.

Extensions (httpfs, ducklake, sqlite, postgres) come from their pip packages pinned to the DuckDB
version: DuckDB would otherwise download them from its own site at run time.
"""

import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import boto3
import duckdb
import duckdb_extensions

from stock_pipeline.settings import SettingsError, get_settings

ALIAS = "warehouse"
# The commit message of a snapshot readers may pin: a complete dbt build, or its compaction.
BUILD_COMPLETE = "build complete"
# How long a writer or reader waits for the SQLite catalog's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class WarehouseError(RuntimeError):
    """The warehouse cannot be opened or read as asked; the message says why, in one line."""


NO_BUILD_YET = (
    "the warehouse has no complete build yet: the pipeline makes one with its first micro-batch "
    "(`make dev`), `stock-pipeline rebuild` from the lake"
)


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    built_at: datetime


@dataclass(frozen=True)
class Catalog:
    """Where the DuckLake catalog lives, parsed from `WAREHOUSE_CATALOG`."""

    kind: str
    target: str

    @classmethod
    def from_settings(cls) -> "Catalog":
        try:
            return cls(*get_settings().catalog)
        except SettingsError as err:  # a bad WAREHOUSE_CATALOG, most likely
            raise WarehouseError(str(err)) from None

    def exists(self) -> bool:
        """False for a SQLite catalog no build has created yet."""
        return self.kind != "sqlite" or Path(self.target).exists()

    @property
    def uri(self) -> str:
        return f"ducklake:{self.kind}:{self.target}"

    def prepare(self) -> None:
        """A new SQLite catalog in WAL mode, so readers never wait for a writer's commit."""
        if self.kind != "sqlite":
            return
        path = Path(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as con:
            con.execute("pragma journal_mode = wal")


def load_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Install the extensions from their pip packages; ATTACH then loads them by itself."""
    for name in ("httpfs", "ducklake", "sqlite_scanner", "postgres_scanner"):
        duckdb_extensions.import_extension(name, con=con)
    con.execute("load httpfs")


def s3_secret_options() -> dict[str, str]:
    """S3 secret options from the same environment boto3 reads.

    With `AWS_ENDPOINT_URL` set (the emulator), its keys, path-style URLs and the endpoint's
    scheme. On AWS, the credentials boto3's own chain resolves (environment, profile, SSO,
    instance role), so DuckDB and boto3 always act as the same identity; DuckDB's
    `credential_chain` provider would need its `aws` extension, which is not installed.
    """
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    settings = get_settings()
    endpoint = settings.aws_endpoint_url
    if not endpoint:
        credentials = session.get_credentials()
        if credentials is None:  # dbt parse, lint and docs need no lake; reads will say why
            return {"type": "s3", "region": region}
        frozen = credentials.get_frozen_credentials()
        options = {"type": "s3", "key_id": frozen.access_key, "secret": frozen.secret_key}
        if frozen.token:
            options["session_token"] = frozen.token
        return {**options, "region": region}
    parsed = urlparse(endpoint)
    return {
        "type": "s3",
        "key_id": settings.aws_access_key_id or "test",
        "secret": settings.aws_secret_access_key or "test",
        "region": region,
        "endpoint": parsed.netloc,
        "url_style": "path",
        "use_ssl": str(parsed.scheme == "https").lower(),
    }


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def attach_lake(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Make `s3://` paths readable on `con`, and the warehouse attachable."""
    load_extensions(con)
    # Secret and ATTACH options cannot be bound as parameters; they are quoted as SQL literals.
    body = ", ".join(
        f"{k} {v}" if k == "type" else f"{k} {_quote(v)}" for k, v in s3_secret_options().items()
    )
    con.execute(f"create or replace secret lake_s3 ({body})")
    return con


def attach_options(read_only: bool, snapshot_version: int | None = None) -> list[str]:
    """The ATTACH options for the warehouse (dbt's profiles.yml attaches with the same)."""
    # busy_timeout is SQLite's; the other catalogs ignore it.
    options = [
        f"data_path {_quote(get_settings().warehouse_data_url)}",
        f"busy_timeout {SQLITE_BUSY_TIMEOUT_MS}",
    ]
    if read_only:
        options.append("read_only")
    if snapshot_version is not None:
        options.append(f"snapshot_version {int(snapshot_version)}")
    return options


def _attach(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    alias: str,
    read_only: bool,
    snapshot_version: int | None = None,
) -> None:
    if read_only and not catalog.exists():
        raise WarehouseError(
            f"WAREHOUSE_CATALOG=sqlite:{catalog.target}: no warehouse there yet; it is created by "
            "the first dbt build (make dev builds it within a minute)"
        )
    options = ", ".join(attach_options(read_only, snapshot_version))
    try:
        con.execute(f"attach {_quote(catalog.uri)} as {alias} ({options})")
    except duckdb.Error as err:
        first_line = str(err).strip().splitlines()[0]
        raise WarehouseError(
            f"WAREHOUSE_CATALOG={catalog.kind}:{catalog.target}: cannot open the catalog: "
            f"{first_line}"
        ) from err


def last_published(con: duckdb.DuckDBPyConnection, at: datetime | None) -> Snapshot | None:
    """The last snapshot ending a complete build (at or before `at`), on an attached warehouse."""
    query = f"""
        select snapshot_id, snapshot_time
        from {ALIAS}.snapshots()
        where commit_message = $complete and ($at is null or snapshot_time <= $at)
        order by snapshot_id desc
        limit 1
    """
    row = con.execute(query, {"complete": BUILD_COMPLETE, "at": at}).fetchone()
    return Snapshot(*row) if row else None


def connect(at: datetime | None = None, latest: bool = False) -> duckdb.DuckDBPyConnection:
    """A read-only connection with the warehouse attached and selected, for notebooks and servers.

    The marts are plain names (`from latest_quotes`), and `s3://` paths of the lake are readable.
    It is pinned to the snapshot of the last complete dbt build, or with `at` to the last one
    completed at or before that time (within the snapshot retention). `latest` pins nothing: each
    query sees the newest commit, half a build included (the pipeline's own checks use it).
    Raises WarehouseError when the catalog cannot be opened, no build has completed yet, or `at`
    is out of reach.
    """
    catalog = Catalog.from_settings()
    con = attach_lake(duckdb.connect())
    con.execute("set timezone = 'UTC'")
    _attach(con, catalog, ALIAS, read_only=True)
    if not latest:
        snapshot = last_published(con, at)
        if snapshot is None:
            con.close()
            if at is not None:
                raise WarehouseError(
                    f"no complete build of the warehouse at or before {at.isoformat()}: it is "
                    "older than the snapshot retention (WAREHOUSE_SNAPSHOT_RETENTION_HOURS) or "
                    "than the warehouse"
                )
            raise WarehouseError(NO_BUILD_YET)
        con.execute(f"detach {ALIAS}")
        _attach(con, catalog, ALIAS, read_only=True, snapshot_version=snapshot.snapshot_id)
    con.execute(f"use {ALIAS}")
    return con


def published_snapshot() -> Snapshot | None:
    """The last complete build: the one `connect()` and `Reader` read now."""
    with connect(latest=True) as con:
        return last_published(con, None)


class Reader:
    """Connections for a server: each sees the last complete build, and follows new ones.

    `connect()` opens a DuckDB database of its own, and loading the extensions into it costs a
    large fraction of a second. A Reader keeps one database for the process: it attaches each new
    complete build read-only as `warehouse_<snapshot id>` (milliseconds), and `cursor()` hands out
    connections that use the newest one. The builds before it stay attached a while, so a request
    that started on one finishes on it.
    """

    KEEP = 3  # snapshots attached at once: the newest and the ones requests may still be reading

    def __init__(self, refresh_seconds: float = 1.0):
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._db = attach_lake(duckdb.connect())
        self._db.execute("set timezone = 'UTC'")
        self._catalog = Catalog.from_settings()
        _attach(self._db, self._catalog, ALIAS, read_only=True)  # follows every commit
        self._attached: deque[tuple[str, Snapshot | None]] = deque()
        self._checked = float("-inf")

    def snapshot(self) -> Snapshot | None:
        """The build `cursor()` reads now (None before the first complete build)."""
        return self._current()[1]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        alias, _ = self._current()
        cursor = self._db.cursor()
        cursor.execute(f"use {alias}")
        return cursor

    def close(self) -> None:
        self._db.close()

    def _current(self) -> tuple[str, Snapshot | None]:
        with self._lock:
            if time.monotonic() - self._checked >= self.refresh_seconds or not self._attached:
                self._checked = time.monotonic()
                self._follow(last_published(self._db.cursor(), None))
            return self._attached[-1]

    def _follow(self, snapshot: Snapshot | None) -> None:
        if self._attached and self._attached[-1][1] == snapshot:
            return
        if snapshot is None:  # no complete build yet: read whatever is there
            self._attached.append((ALIAS, None))
            return
        alias = f"{ALIAS}_{snapshot.snapshot_id}"
        _attach(
            self._db, self._catalog, alias, read_only=True, snapshot_version=snapshot.snapshot_id
        )
        self._attached.append((alias, snapshot))
        while len(self._attached) > self.KEEP:
            old, _ = self._attached.popleft()
            if old != ALIAS:
                self._db.execute(f"detach {old}")


def writer(con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """`con` (or a new connection) with the warehouse attached read-write, for maintenance."""
    catalog = Catalog.from_settings()
    catalog.prepare()
    con = attach_lake(con or duckdb.connect())
    _attach(con, catalog, ALIAS, read_only=False)
    return con
