"""`warehouse_maintenance_job`: keeps the DuckLake small as micro-batches pile up.

Every micro-batch commits a snapshot and small files (or rows inlined in the catalog). The job
runs DuckLake's CHECKPOINT steps in its order: flush inlined rows to Parquet, expire snapshots
older than the retention, merge adjacent small files, rewrite files with many deletes, and delete
the files nothing references any more (docs/architecture.md, "Warehouse"). Step by step, not as
one CHECKPOINT, so that readers always keep a complete build to pin: compaction of a complete
build is marked complete too, and the newest complete build never expires.
"""

import time

import dagster as dg
import duckdb

from stock_pipeline.resources.warehouse import ALIAS, BUILD_COMPLETE, last_published, writer
from stock_pipeline.settings import get_settings

# The steps that rewrite storage and change no row, in CHECKPOINT's order; each commits on its own.
COMPACTION = (
    "ducklake_flush_inlined_data",
    "ducklake_merge_adjacent_files",
    "ducklake_rewrite_data_files",
)
# Snapshots older than the retention, short of the newest complete build: readers pin that one.
EXPIRED_SQL = f"""
select list(snapshot_id order by snapshot_id)
from {ALIAS}.snapshots()
where snapshot_time < $cutoff
    and snapshot_id < (select max(snapshot_id) from {ALIAS}.snapshots())
    and ($pinned is null or snapshot_id < $pinned)
"""
# Files the catalog tracks: in some snapshot, or scheduled for deletion but still on storage.
STORAGE_SQL = f"""
select
    (select count(*) from {{metadata}}.ducklake_data_file where end_snapshot is null),
    (select count(*) from {{metadata}}.ducklake_data_file)
        + (select count(*) from {{metadata}}.ducklake_files_scheduled_for_deletion),
    (select coalesce(sum(file_size_bytes), 0) from {{metadata}}.ducklake_data_file),
    (select count(*) from {ALIAS}.snapshots())
"""


def storage(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Data files the newest snapshot reads, files on storage, their bytes, and snapshots."""
    live, stored, stored_bytes, snapshots = con.execute(
        STORAGE_SQL.format(metadata=f"__ducklake_metadata_{ALIAS}")
    ).fetchone()
    return {
        "live_files": live,
        "stored_files": stored,
        "bytes": stored_bytes,
        "snapshots": snapshots,
    }


class MaintenanceConfig(dg.Config):
    retention_hours: float = get_settings().warehouse_snapshot_retention_hours
    """Snapshots older than this are expired (time travel reaches back this far), and files
    nothing references are deleted once this old, so no running query loses them
    (WAREHOUSE_SNAPSHOT_RETENTION_HOURS)."""


@dg.op(pool="duckdb")  # a writer: serialised with the dbt builds
def checkpoint_warehouse(context: dg.OpExecutionContext, config: MaintenanceConfig) -> None:
    started = time.monotonic()
    with writer() as con:
        before = storage(con)
        pinned = last_published(con, None)
        newest = con.execute(f"select max(snapshot_id) from {ALIAS}.snapshots()").fetchone()[0]
        complete = pinned is not None and pinned.snapshot_id == newest
        for step in COMPACTION:
            con.execute("begin")
            con.execute(f"call {step}(?)", [ALIAS])
            if complete:  # the same rows as the complete build, on fewer files: readers move on
                con.execute(f"call {ALIAS}.set_commit_message('maintenance', ?)", [BUILD_COMPLETE])
            con.execute("commit")
        pinned = last_published(con, None)
        retention = f"{config.retention_hours * 3600:.0f} seconds"
        cutoff = con.execute("select now() - ?::interval", [retention]).fetchone()[0]
        # By id, not DuckLake's `older_than`: on a SQLite catalog that compares the day only.
        expired = con.execute(
            EXPIRED_SQL, {"cutoff": cutoff, "pinned": pinned.snapshot_id if pinned else None}
        ).fetchone()[0]
        if expired:
            con.execute("call ducklake_expire_snapshots(?, versions => ?)", [ALIAS, expired])
        for cleanup in ("ducklake_cleanup_old_files", "ducklake_delete_orphaned_files"):
            con.execute(f"call {cleanup}(?, older_than => ?)", [ALIAS, cutoff])
        after = storage(con)
    context.add_output_metadata(
        {
            **{f"{name}_before": value for name, value in before.items()},
            **{f"{name}_after": value for name, value in after.items()},
            "retention_hours": config.retention_hours,
            "seconds": round(time.monotonic() - started, 3),
        }
    )
    context.log.info(
        f"warehouse: {before['live_files']} -> {after['live_files']} live files, "
        f"{before['stored_files']} -> {after['stored_files']} on storage, "
        f"{before['snapshots']} -> {after['snapshots']} snapshots"
    )


@dg.job(description="Merge the warehouse's small files, expire old snapshots, delete unused files.")
def warehouse_maintenance_job():
    checkpoint_warehouse()


warehouse_maintenance_schedule = dg.ScheduleDefinition(
    job=warehouse_maintenance_job,
    cron_schedule=get_settings().warehouse_maintenance_cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
