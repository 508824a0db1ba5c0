"""Which lake objects the next incremental build of `stg_lake__ticks` reads.

Every `raw_ticks` materialization lists the tick objects it wrote. A build passes to dbt those
recorded since the last build that loaded staging, whose position (the cursor) it keeps in
`stg_lake__ticks`'s own metadata: a micro-batch whose build failed or never ran is loaded by the
next build, and staging skips by event_id what was loaded before (a re-executed run adds nothing).
"""

from dataclasses import dataclass, field

import dagster as dg

from stock_pipeline.wire import TICK_OBJECTS

RAW_TICKS = dg.AssetKey("raw_ticks")
STG_TICKS = dg.AssetKey("stg_lake__ticks")
CURSOR = "raw_ticks_cursor"
# dbt gets the list in an environment variable, and Linux caps one at 128 KiB: a backlog is loaded
# in builds of at most this many objects.
MAX_OBJECTS = 400
# Materializations of concurrent runs can commit out of storage-id order (the PostgreSQL event
# log): ones created this close before the cursor and not passed yet are picked up too.
OVERLAP_SECONDS = 10.0


@dataclass
class LakeObjects:
    """What to read (`urls`; None: the whole lake) and the cursor to keep once it is loaded."""

    urls: list[str] | None
    cursor: dict = field(default_factory=dict)
    backlog: bool = False  # more materializations wait for the next build

    def metadata(self) -> dict:
        read = "whole lake" if self.urls is None else len(self.urls)
        return {
            CURSOR: dg.MetadataValue.json(self.cursor),
            "lake_objects_read": read,
            "lake_objects_backlog": self.backlog,
        }


def _cursor(storage_id: int, recent: dict[int, float]) -> dict:
    """The newest storage id passed, and the ids passed within OVERLAP_SECONDS of the newest."""
    newest = max(recent.values(), default=0.0)
    kept = [[i, t] for i, t in sorted(recent.items()) if t > newest - OVERLAP_SECONDS]
    return {"storage_id": storage_id, "recent": kept}


def _tick_objects(record: dg.EventLogRecord) -> list[str]:
    entry = record.asset_materialization.metadata.get(TICK_OBJECTS)
    return list(entry.value) if entry else []


def objects_to_load(instance: dg.DagsterInstance, full_refresh: bool) -> LakeObjects:
    loaded = instance.get_latest_materialization_event(STG_TICKS)
    previous = loaded.asset_materialization.metadata.get(CURSOR) if loaded else None
    if full_refresh or previous is None:
        # Nothing known loaded (a first build, a purged event log): read the whole lake.
        newest = instance.fetch_materializations(RAW_TICKS, limit=1).records
        recent = {r.storage_id: r.timestamp for r in newest}
        return LakeObjects(None, _cursor(max(recent, default=0), recent))
    storage_id = int(previous.value["storage_id"])
    recent = {int(i): float(t) for i, t in previous.value["recent"]}
    late = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=RAW_TICKS,
            after_timestamp=max(recent.values(), default=0.0) - OVERLAP_SECONDS,
            before_storage_id=storage_id,
        ),
        limit=MAX_OBJECTS,
    ).records
    new = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_TICKS, after_storage_id=storage_id),
        limit=MAX_OBJECTS + 1,
        ascending=True,
    ).records
    urls: set[str] = set()
    for record in [r for r in late if r.storage_id not in recent] + new:
        objects = _tick_objects(record)
        if urls and len(urls) + len(objects) > MAX_OBJECTS:
            break
        urls.update(objects)
        recent[record.storage_id] = record.timestamp
        storage_id = max(storage_id, record.storage_id)
    backlog = any(r.storage_id not in recent for r in new) or len(new) > MAX_OBJECTS
    return LakeObjects(sorted(urls), _cursor(storage_id, recent), backlog)
