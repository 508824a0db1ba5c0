"""The dbt assets in the asset graph: one lineage from the lake assets, serialised writes."""

import dagster as dg

from stock_pipeline.defs.transform.assets import dbt_models


def test_lake_sources_are_the_ingest_and_history_assets():
    deps = dbt_models.asset_deps
    assert deps[dg.AssetKey("stg_lake__ticks")] == {dg.AssetKey("raw_ticks")}
    assert deps[dg.AssetKey("minute_bars")] == {dg.AssetKey("stg_lake__ticks")}
    assert deps[dg.AssetKey("latest_quotes")] == {
        dg.AssetKey("daily_prices"),
        dg.AssetKey("moving_averages"),
    }
    if dg.AssetKey("stg_lake__daily_bars") in deps:
        assert deps[dg.AssetKey("stg_lake__daily_bars")] == {dg.AssetKey("daily_bars")}


def test_models_update_themselves_in_the_duckdb_pool():
    specs = {spec.key.to_user_string(): spec for spec in dbt_models.specs}
    assert specs["stg_lake__ticks"].group_name == "staging"
    assert specs["latest_quotes"].group_name == "marts"
    assert all(spec.automation_condition is not None for spec in specs.values())
    assert dbt_models.op.pool == "duckdb"
    # dbt tests are asset checks on the models they test.
    checked = {key.asset_key.to_user_string() for key in dbt_models.check_keys}
    assert {"stg_lake__ticks", "minute_bars", "moving_averages", "daily_prices"} <= checked
