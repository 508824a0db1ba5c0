"""`dagster_state_purge_job`: deletes finished runs older than DAGSTER_RETENTION_HOURS.

A micro-batch run a few seconds apart, each with its event log, compute logs and (on SQLite)
its own database file, grows the instance by megabytes a minute. Runs of partitioned assets
are kept: their events are what marks a partition (a `daily_bars` day) as materialised. Sensor
and schedule ticks are purged by the instance's own `retention` settings.
"""

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage

from stock_pipeline.settings import get_settings

PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")
BATCH = 500


@dataclass
class PurgeResult:
    runs_deleted: int = 0
    runs_kept_for_partitions: int = 0


def purge_runs(instance: dg.DagsterInstance, before: datetime, keep: set[str]) -> PurgeResult:
    """Delete finished runs last updated before `before`, but not the ones in `keep` nor runs
    of partitioned assets."""
    result = PurgeResult()
    kept: set[str] = set(keep)
    while True:
        records = instance.get_run_records(
            dg.RunsFilter(
                statuses=[
                    dg.DagsterRunStatus.SUCCESS,
                    dg.DagsterRunStatus.FAILURE,
                    dg.DagsterRunStatus.CANCELED,
                ],
                updated_before=before,
            ),
            limit=BATCH + len(kept),
        )
        doomed = []
        for record in records:
            run = record.dagster_run
            if run.run_id in kept:
                continue
            if any(tag in run.tags for tag in PARTITION_TAGS):
                kept.add(run.run_id)
                result.runs_kept_for_partitions += 1
                continue
            doomed.append(run.run_id)
        if not doomed:
            return result
        for run_id in doomed:
            instance.delete_run(run_id)
            # SQLite keeps each run's events in a file of its own, which delete_run empties.
            storage = instance.event_log_storage
            if isinstance(storage, SqliteEventLogStorage):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(storage.path_for_shard(run_id))
            with contextlib.suppress(Exception):  # not every compute log manager can delete
                instance.compute_log_manager.delete_logs(prefix=[run_id])
            result.runs_deleted += 1


@dg.op(description="Delete finished runs older than DAGSTER_RETENTION_HOURS, with their logs.")
def purge_old_runs(context: dg.OpExecutionContext) -> dg.Output[None]:
    hours = get_settings().dagster_retention_hours
    before = datetime.now(UTC) - timedelta(hours=hours)
    result = purge_runs(context.instance, before, keep={context.run_id})
    context.log.info(
        f"deleted {result.runs_deleted} runs last updated before {before:%Y-%m-%d %H:%M}Z"
    )
    return dg.Output(
        None,
        metadata={
            "runs_deleted": result.runs_deleted,
            "runs_kept_for_partitions": result.runs_kept_for_partitions,
            "retention_hours": hours,
        },
    )


@dg.job(description="Keep Dagster's local state bounded: purge old runs and their logs.")
def dagster_state_purge_job() -> None:
    purge_old_runs()


dagster_state_purge_schedule = dg.ScheduleDefinition(
    job=dagster_state_purge_job,
    cron_schedule="*/30 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
