"""`dagster_state_purge_job`: deletes finished runs older than DAGSTER_RETENTION_HOURS.

A micro-batch run every few seconds, each with its event log and compute logs, is most of the
instance: successful `raw_ticks_job` runs go after DAGSTER_MICRO_BATCH_RETENTION_HOURS instead,
which keeps a day of `make dev` under 1 GB. Runs of partitioned assets are kept: their events
are what marks a partition (a `daily_bars` day) as materialised. Sensor and schedule ticks are
purged by the instance's own `retention` settings.
"""

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage

from stock_pipeline.defs.ingest.jobs import raw_ticks_job
from stock_pipeline.settings import get_settings

PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start")
BATCH = 500


@dataclass
class PurgeResult:
    runs_deleted: int = 0
    runs_kept_for_partitions: int = 0


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def purge_runs(
    instance: dg.DagsterInstance, runs: dg.RunsFilter, keep: set[str], result: PurgeResult
) -> None:
    """Delete the runs `runs` selects (finished ones, by their update time), but not the ones in
    `keep` nor runs of partitioned assets."""
    kept: set[str] = set(keep)
    while True:
        records = instance.get_run_records(runs, limit=BATCH + len(kept))
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
            return
        for run_id in doomed:
            instance.delete_run(run_id)
            # Dagster's default SQLite storage keeps each run's events in a file of its own,
            # which delete_run empties (the dev instance has one event log for all runs).
            storage = instance.event_log_storage
            if isinstance(storage, SqliteEventLogStorage):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(storage.path_for_shard(run_id))
            with contextlib.suppress(Exception):  # not every compute log manager can delete
                instance.compute_log_manager.delete_logs(prefix=[run_id])
            result.runs_deleted += 1


@dg.op(
    description="Delete finished runs older than DAGSTER_RETENTION_HOURS, and successful "
    "micro-batch runs older than DAGSTER_MICRO_BATCH_RETENTION_HOURS, with their logs."
)
def purge_old_runs(context: dg.OpExecutionContext) -> dg.Output[None]:
    settings = get_settings()
    now = datetime.now(UTC)
    before = now - timedelta(hours=settings.dagster_retention_hours)
    batches_before = now - timedelta(hours=settings.dagster_micro_batch_retention_hours)
    result = PurgeResult()
    keep = {context.run_id}
    purge_runs(
        context.instance,
        dg.RunsFilter(
            job_name=raw_ticks_job.name,
            statuses=[dg.DagsterRunStatus.SUCCESS],
            updated_before=batches_before,
        ),
        keep,
        result,
    )
    purge_runs(
        context.instance, dg.RunsFilter(statuses=FINISHED, updated_before=before), keep, result
    )
    context.log.info(
        f"deleted {result.runs_deleted} runs last updated before {before:%Y-%m-%d %H:%M}Z"
        f" (successful {raw_ticks_job.name} runs: before {batches_before:%Y-%m-%d %H:%M}Z)"
    )
    return dg.Output(
        None,
        metadata={
            "runs_deleted": result.runs_deleted,
            "runs_kept_for_partitions": result.runs_kept_for_partitions,
            "retention_hours": settings.dagster_retention_hours,
            "micro_batch_retention_hours": settings.dagster_micro_batch_retention_hours,
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
