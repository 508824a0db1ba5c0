"""The dbt project on its own: an empty lake builds, and the SQL unit tests pass."""

from stock_pipeline.defs.transform.assets import daily_bar_models, dbt_project, tick_models


def test_empty_lake_builds_and_unit_tests_pass(warehouse, dbt_cli):
    # No tick (or daily bar) files yet: the models build empty instead of failing.
    run_id = warehouse.build(models=(tick_models, daily_bar_models)).run_id
    assert warehouse.read("latest_quotes").empty
    # The run's own dbt target directories (`<step>-<run id>-<uuid>`) are gone: one per
    # micro-batch would fill the disk.
    target = dbt_project().project_dir / dbt_project().target_path
    assert list(target.glob(f"*-{run_id[:7]}-*")) == []

    invocation = dbt_cli.cli(["test", "--select", "test_type:unit"], raise_on_error=False)
    invocation.wait()
    results = invocation.get_artifact("run_results.json")["results"]
    unit_tests = {r["unique_id"].split(".")[-1]: r["status"] for r in results}
    assert invocation.is_successful(), unit_tests
    for name in (
        "minute_bars_ohlc_and_vwap",
        "moving_averages_sma_and_bollinger",
        "daily_prices_ohlc_vwap_and_return",
    ):
        assert unit_tests[name] == "pass"
