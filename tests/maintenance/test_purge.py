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


def test_successful_micro_batch_runs_go_sooner_failed_ones_and_others_stay(
    dagster_home, monkeypatch
):
    @dg.asset
    def flaky(context: dg.AssetExecutionContext) -> None:
        if context.run.tags.get("fail"):
            raise RuntimeError("a failed micro-batch")

    micro_batch = dg.define_asset_job("raw_ticks_job", selection=[flaky])
    other = dg.define_asset_job("other_job", selection=[flaky])
    job_defs = dg.Definitions(assets=[flaky], jobs=[micro_batch, other])
    with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:

        def run(name: str, **tags: str) -> str:
            job = job_defs.resolve_job_def(name)
            return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False).run_id

        batches = [run("raw_ticks_job") for _ in range(3)]
        kept = {run("raw_ticks_job", fail="yes"), run("other_job")}
        time.sleep(1.1)

        monkeypatch.setenv("DAGSTER_RETENTION_HOURS", "24")
        monkeypatch.setenv("DAGSTER_MICRO_BATCH_RETENTION_HOURS", "0")
        get_settings.cache_clear()
        purge = dagster_state_purge_job.execute_in_process(instance=instance)

        (output,) = [e for e in purge.all_events if e.is_successful_output]
        assert output.event_specific_data.metadata["runs_deleted"].value == len(batches)
        assert {r.run_id for r in instance.get_runs()} == kept | {purge.run_id}
