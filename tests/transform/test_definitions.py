"""The dbt assets in the asset graph: one lineage from the lake assets, serialised writes."""

import dagster as dg

from stock_pipeline.defs.transform.assets import daily_bar_models, tick_models


def test_lake_sources_are_the_ingest_and_history_assets():
    deps = {**tick_models.asset_deps, **daily_bar_models.asset_deps}
    exclusions = dg.AssetKey("stg_lake__tick_exclusions")
    assert deps[exclusions] == {dg.AssetKey("tick_exclusions")}
    assert deps[dg.AssetKey("stg_lake__ticks")] == {dg.AssetKey("raw_ticks"), exclusions}
    assert deps[dg.AssetKey("minute_bars")] == {dg.AssetKey("stg_lake__ticks"), exclusions}
    assert deps[dg.AssetKey("latest_quotes")] == {
        dg.AssetKey("daily_prices"),
        dg.AssetKey("moving_averages"),
    }
    assert deps[dg.AssetKey("stg_lake__daily_bars")] == {dg.AssetKey("daily_bars")}


def test_one_step_per_lake_source_each_in_the_duckdb_pool():
    ticks = {key.to_user_string() for key in tick_models.keys}
    assert ticks == {
        "stg_lake__tick_exclusions",
        "stg_lake__ticks",
        "minute_bars",
        "minute_bar_rule_days",
        "minute_bar_anomalies",
        "moving_averages",
        "daily_prices",
        "latest_quotes",
    }
    assert {key.to_user_string() for key in daily_bar_models.keys} == {
        "stg_lake__daily_bars",
        "daily_history",
    }
    for models in (tick_models, daily_bar_models):
        assert models.op.pool == "duckdb"
    # The stream's runs build the tick models, with the tests on minute_bars before the marts;
    # automation only follows the daily bars.
    assert all(spec.automation_condition is None for spec in tick_models.specs)
    assert all(spec.automation_condition is not None for spec in daily_bar_models.specs)
    specs = {spec.key.to_user_string(): spec for spec in tick_models.specs}
    assert specs["stg_lake__ticks"].group_name == "staging"
    assert specs["latest_quotes"].group_name == "marts"
    # dbt tests are asset checks on the models they test. Failing ERROR tests fail the run
    # (Dagster's blocking), except on minute_bars: there the anomaly checks must still run.
    checks = {(spec.asset_key.to_user_string(), spec.blocking) for spec in tick_models.check_specs}
    assert {name for name, _ in checks} >= {
        "stg_lake__ticks",
        "minute_bars",
        "moving_averages",
        "daily_prices",
    }
    assert ("minute_bars", True) not in checks and ("stg_lake__ticks", True) in checks


def test_the_micro_batch_run_builds_every_tick_model_exclusions_included():
    from stock_pipeline.definitions import defs

    job = defs.resolve_job_def("raw_ticks_job")
    built = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert built >= {key.to_user_string() for key in tick_models.keys}


def test_every_tick_model_test_runs_per_micro_batch_or_on_the_schedule():
    from stock_pipeline.definitions import defs

    repository = defs.get_repository_def()
    graph = repository.asset_graph
    per_batch = repository.get_job("raw_ticks_job").asset_layer.asset_graph.asset_check_keys
    scheduled = repository.get_job("tick_model_checks_job").asset_layer
    tests = {spec.key for spec in tick_models.check_specs}
    names = {key.name for key in tests & per_batch}
    # The micro-batch keeps the tests that stop the marts: the impossible bars, a doubled tick.
    assert names == {
        "minute_bars_price_within_daily_range",
        "minute_bars_high_not_below_low",
        "minute_bars_volume_not_negative",
        *(key.name for key in tests if key.name.startswith("unique_in_latest_days_stg_lake__")),
    }
    assert len(names) == 4
    assert tests - per_batch == scheduled.asset_graph.asset_check_keys
    assert not scheduled.selected_asset_keys
    assert len(tests - per_batch) == 19
    # The anomaly alerts still follow every micro-batch.
    assert {key.name for key in per_batch if key not in tests} >= {"price_jump", "stale_feed"}
    assert repository.get_schedule_def("tick_model_checks_job_schedule").job_name == (
        "tick_model_checks_job"
    )
    assert graph.asset_check_keys >= per_batch | tests
