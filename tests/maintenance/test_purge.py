"""dagster_state_purge_job: old runs go with their event logs; partition history stays."""

import time
from pathlib import Path

import dagster as dg

from stock_pipeline.defs.maintenance.purge import dagster_state_purge_job
from stock_pipeline.settings import get_settings

days = dg.DailyPartitionsDefinition(start_date="2025-12-01")


@dg.asset
def plain() -> None:
    pass


@dg.asset(partitions_def=days)
def daily() -> None:
    pass


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_purge_deletes_old_runs_and_their_files_but_not_partition_history(
    dagster_home, monkeypatch
):
    with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
        old = [dg.materialize([plain], instance=instance).run_id for _ in range(5)]
        partitioned = dg.materialize([daily], instance=instance, partition_key="2025-12-02")
        runs = dagster_home / "history" / "runs"
        event_files = lambda: sorted(p.stem for p in runs.glob("*.db"))  # noqa: E731
        assert set(old) <= set(event_files())
        before = folder_bytes(dagster_home)
        time.sleep(1.1)  # the cut-off is by update time; nothing may be newer than retention

        monkeypatch.setenv("DAGSTER_RETENTION_HOURS", "0")
        get_settings.cache_clear()
        purge = dagster_state_purge_job.execute_in_process(instance=instance)

        assert purge.success
        (output,) = [e for e in purge.all_events if e.is_successful_output]
        assert output.event_specific_data.metadata["runs_deleted"].value == 5
        assert output.event_specific_data.metadata["runs_kept_for_partitions"].value == 1
        remaining = {run.run_id for run in instance.get_runs()}
        assert remaining == {partitioned.run_id, purge.run_id}
        assert not set(old) & set(event_files())  # SQLite's per-run files went too
        assert instance.get_materialized_partitions(daily.key) == {"2025-12-02"}
        assert folder_bytes(dagster_home) < before

        # A retention longer than the runs' age keeps them.
        monkeypatch.setenv("DAGSTER_RETENTION_HOURS", "24")
        get_settings.cache_clear()
        assert dagster_state_purge_job.execute_in_process(instance=instance).success
        assert len(instance.get_runs()) == 3
