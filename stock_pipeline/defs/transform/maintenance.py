"""`warehouse_maintenance_job`: keeps the DuckLake small as micro-batches pile up.

Every micro-batch commits a snapshot and small files (or rows inlined in the catalog). DuckLake's
CHECKPOINT runs its whole maintenance in order: flush inlined rows to Parquet, expire snapshots
older than the retention, merge adjacent small files, rewrite files with many deletes, and delete
the files nothing references any more (docs/architecture.md, "Warehouse").
"""

import time

import dagster as dg
import duckdb

from stock_pipeline.resources.warehouse import ALIAS, writer
from stock_pipeline.settings import setting

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
    retention_hours: float = float(setting("WAREHOUSE_SNAPSHOT_RETENTION_HOURS"))
    """Snapshots older than this are expired (time travel reaches back this far), and files
    nothing references are deleted once this old, so no running query loses them
    (WAREHOUSE_SNAPSHOT_RETENTION_HOURS)."""


@dg.op(pool="duckdb")  # a writer: serialised with the dbt builds
def checkpoint_warehouse(context: dg.OpExecutionContext, config: MaintenanceConfig) -> None:
    started = time.monotonic()
    with writer() as con:
        before = storage(con)
        interval = f"{config.retention_hours * 3600:.0f} seconds"
        for option in ("expire_older_than", "delete_older_than"):
            con.execute(f"call {ALIAS}.set_option(?, ?)", [option, interval])
        con.execute(f"checkpoint {ALIAS}")
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
    cron_schedule=setting("WAREHOUSE_MAINTENANCE_CRON"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
