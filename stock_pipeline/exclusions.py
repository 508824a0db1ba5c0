"""`stock-pipeline exclude`: leave bad prints out of the warehouse, and list what is left out.

Each call writes one object under the lake's `exclusions/ticks/` and never rewrites it: JSON Lines,
one line per tick (`event_id`, `reason`, `excluded_at`, and the tick's `symbol` and `ts` as the
warehouse knew them, for the record). Any host may exclude at any time without a
read-modify-write race, locally and on AWS alike. The next dbt build reads the new objects:
staging drops the ticks and the marts recompute the bars and days they fell into
(docs/architecture.md, "Excluding ticks"). dbt reads only the first three fields: which bars a
tick touched it takes from staging itself.
"""

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
from botocore.exceptions import BotoCoreError, ClientError

from stock_pipeline.resources.aws import LakeResource
from stock_pipeline.resources.warehouse import (
    ALIAS,
    Catalog,
    WarehouseError,
    attach_lake,
    connect,
)
from stock_pipeline.settings import get_settings

PREFIX = "exclusions/ticks"
# The lines as dbt's source `lake.tick_exclusions` reads them (dbt_project/models/staging), with
# the tick as it was recorded.
READ_OPTIONS = (
    "format = 'newline_delimited', "
    "columns = {event_id: 'varchar', reason: 'varchar', excluded_at: 'timestamptz', "
    "symbol: 'varchar', ts: 'timestamptz'}, "
    "filename = true"
)
STAGING, EXCLUSIONS = "stg_lake__ticks", "stg_lake__tick_exclusions"
TICK = {"event_id": "varchar", "symbol": "varchar", "ts": "timestamptz"}


class ExclusionError(RuntimeError):
    """Nothing was excluded or listed; the message says why, in one line."""


@dataclass
class Outcome:
    """What one `exclude` call did."""

    url: str | None = None  # the object written; None when nothing was new
    excluded: list[str] = field(default_factory=list)
    already: dict[str, tuple[datetime, str]] = field(default_factory=dict)  # id: (when, why)
    known: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # id: (symbol, ts)


def _lake() -> LakeResource:
    return LakeResource(bucket=get_settings().lake_bucket, prefix=get_settings().lake_prefix)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


class _Reader:
    """One DuckDB connection that reads the lake's exclusions and, once it exists, the warehouse
    (its newest commit: a tick loaded a second ago counts as known)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, tables: set[str]):
        self.con = con
        self.tables = tables
        self.glob = _lake().url(PREFIX, "*.jsonl")
        self.has_objects = con.execute("select count(*) from glob(?)", [self.glob]).fetchone()[0]

    def lake_exclusions(self) -> str:
        """SQL for the exclusions in the lake: event_id, reason, excluded_at, symbol, ts and
        source_object."""
        if not self.has_objects:  # read_json fails on a glob that matches nothing
            return (
                "select null::varchar as event_id, null::varchar as reason, "
                "null::timestamptz as excluded_at, null::varchar as symbol, "
                "null::timestamptz as ts, null::varchar as source_object where false"
            )
        return (
            "select event_id, reason, excluded_at, symbol, ts, filename as source_object "
            f"from read_json($glob, {READ_OPTIONS})"
        )

    def table(self, name: str, columns: dict[str, str]) -> str:
        """`columns` of the warehouse's `name`, or an empty relation when it is not there."""
        if name in self.tables:
            return f"(select {', '.join(columns)} from {name})"
        nulls = ", ".join(f"null::{kind} as {column}" for column, kind in columns.items())
        return f"(select {nulls} where false)"

    def query(self, sql: str, **params) -> duckdb.DuckDBPyRelation:
        if self.has_objects:
            params["glob"] = self.glob
        used = {name: value for name, value in params.items() if f"${name}" in sql}
        return self.con.sql(sql, params=used)


@contextmanager
def _reader() -> Iterator[_Reader]:
    try:
        if Catalog.from_settings().exists():
            con = connect(latest=True)
            listed = con.execute(
                "select table_name from duckdb_tables() where database_name = ?", [ALIAS]
            ).fetchall()
            tables = {name for (name,) in listed}
        else:  # no build yet: no tick is known
            con = attach_lake(duckdb.connect())
            con.execute("set timezone = 'UTC'")
            tables = set()
    except WarehouseError as err:
        raise ExclusionError(str(err)) from None
    try:
        with con:
            yield _Reader(con, tables)
    except duckdb.Error as err:
        message = f"cannot read the exclusions or the warehouse: {_first_line(err)}"
        raise ExclusionError(message) from err


def exclude(event_ids: Sequence[str], reason: str, force: bool = False) -> Outcome:
    """Record `event_ids` as excluded for `reason`, in one new lake object.

    Ids already excluded are left as they are. An id the warehouse does not know (a typo, or a
    tick not loaded yet) stops the call with nothing written, unless `force`.
    """
    ids = list(dict.fromkeys(event_id.strip() for event_id in event_ids))
    if not ids or "" in ids:
        raise ExclusionError("give the event_id of each tick to exclude (an empty one is none)")
    reason = (reason or "").strip()
    if not reason:
        raise ExclusionError("--reason must say why the ticks are excluded")
    outcome = Outcome()
    with _reader() as reader:
        excluded = reader.query(
            f"""
            select event_id, min(excluded_at), arg_min(reason, excluded_at)
            from ({reader.lake_exclusions()})
            where event_id in (select unnest($ids))
            group by event_id
            """,
            ids=ids,
        ).fetchall()
        outcome.already = {event_id: (at, why) for event_id, at, why in excluded}
        known = reader.query(
            f"""
            select event_id, symbol, ts from {reader.table(STAGING, TICK)}
            where event_id in (select unnest($ids))
            """,
            ids=ids,
        ).fetchall()
        outcome.known = {event_id: (symbol, ts) for event_id, symbol, ts in known}
    new = [event_id for event_id in ids if event_id not in outcome.already]
    unknown = [event_id for event_id in new if event_id not in outcome.known]
    if unknown and not force:
        raise ExclusionError(
            f"not in the warehouse: {', '.join(unknown)}. Check the ids, or pass --force to "
            "exclude ticks not loaded yet. Nothing was excluded"
        )
    if new:
        outcome.url = write(new, reason, datetime.now(UTC), outcome.known)
        outcome.excluded = new
    return outcome


def write(
    event_ids: list[str],
    reason: str,
    excluded_at: datetime,
    known: dict[str, tuple[str, datetime]],
) -> str:
    """One new exclusions object for `event_ids`; its s3:// URL."""
    lake = _lake()
    name = f"{excluded_at:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.jsonl"
    lines = []
    for event_id in event_ids:
        symbol, ts = known.get(event_id, (None, None))
        line = {"event_id": event_id, "reason": reason, "excluded_at": excluded_at.isoformat()}
        line |= {"symbol": symbol, "ts": ts.isoformat() if ts else None}
        lines.append(json.dumps(line))
    try:
        # A new name every call, and never an overwrite: the object is immutable once written.
        lake.get_client().put_object(
            Bucket=lake.bucket,
            Key=lake.key(PREFIX, name),
            Body=("\n".join(lines) + "\n").encode(),
            ContentType="application/x-ndjson",
            IfNoneMatch="*",
        )
    except (BotoCoreError, ClientError) as err:
        raise ExclusionError(f"cannot write {lake.url(PREFIX, name)}: {err}") from None
    return lake.url(PREFIX, name)


@contextmanager
def exclusions() -> Iterator[duckdb.DuckDBPyRelation]:
    """Every exclusion, oldest first: event_id, symbol, ts, reason, excluded_at, status.

    symbol and ts come from the warehouse where it knows the tick (or knew it when the tick was
    excluded); status says whether a build has applied the exclusion yet.
    """
    with _reader() as reader:
        ticks = reader.table(STAGING, TICK)
        loaded = reader.table(EXCLUSIONS, {"source_object": "varchar", **TICK})
        yield reader.query(
            f"""
            with excluded as ({reader.lake_exclusions()}),
            loaded as {loaded},
            removed as (
                -- The tick as staging held it when its exclusion was applied.
                select event_id, any_value(symbol) as symbol, any_value(ts) as ts
                from loaded
                where symbol is not null
                group by event_id
            ),
            ticks as (select * from {ticks} semi join excluded using (event_id))
            select
                excluded.event_id,
                coalesce(ticks.symbol, removed.symbol, excluded.symbol) as symbol,
                coalesce(ticks.ts, removed.ts, excluded.ts) as ts,
                excluded.reason,
                excluded.excluded_at,
                case when applied.event_id is null then 'pending' else 'applied' end as status
            from excluded
            left join ticks on excluded.event_id = ticks.event_id
            left join removed on excluded.event_id = removed.event_id
            left join loaded as applied
                on
                    excluded.source_object = applied.source_object
                    and excluded.event_id = applied.event_id
            order by excluded.excluded_at, excluded.event_id
            """
        )
