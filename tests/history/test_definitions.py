"""The history domain inside the whole code location: lineage, job, schedule and check."""

import dagster as dg


def test_daily_bars_feed_daily_history_and_the_schedule_runs_the_job():
    from stock_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    daily_bars = graph.get(dg.AssetKey("daily_bars"))
    assert daily_bars.group_name == "history"
    assert daily_bars.backfill_policy == dg.BackfillPolicy.single_run()
    # dbt's source lake.daily_bars is this asset: one lineage down to the indicators.
    assert graph.get(dg.AssetKey("stg_lake__daily_bars")).parent_keys == {daily_bars.key}
    assert (
        dg.AssetKey("stg_lake__daily_bars") in graph.get(dg.AssetKey("daily_history")).parent_keys
    )

    job = defs.resolve_job_def("daily_bars_job")
    assert job.partitions_def.get_partition_keys_in_range(
        dg.PartitionKeyRange("2025-12-24", "2025-12-29")
    ) == ["2025-12-24", "2025-12-25", "2025-12-26", "2025-12-29"]
    assert defs.resolve_schedule_def("daily_bars_schedule").job_name == "daily_bars_job"
    assert dg.AssetCheckKey(dg.AssetKey("daily_prices"), "daily_close_matches_official") in (
        graph.asset_check_keys
    )
