"""The dbt project on its own: an empty lake builds, and the SQL unit tests pass."""

from dagster_dbt.core import resource as dagster_dbt_resource

from stock_pipeline.defs.transform.assets import daily_bar_models, dbt_project, tick_models
from stock_pipeline.resources.dbt_cli import DbtCli


def test_empty_lake_builds_and_unit_tests_pass(warehouse):
    # No tick (or daily bar) files yet: the models build empty instead of failing.
    run_id = warehouse.build(models=(tick_models, daily_bar_models)).run_id
    assert warehouse.read("latest_quotes").empty
    # The run's own dbt target directories (`<step>-<run id>-<uuid>`) are gone: one per
    # micro-batch would fill the disk.
    target = dbt_project().project_dir / dbt_project().target_path
    assert list(target.glob(f"*-{run_id[:7]}-*")) == []

    invocation = DbtCli(project_dir=dbt_project()).cli(
        ["test", "--select", "test_type:unit"], raise_on_error=False
    )
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


def test_dbt_runs_without_the_version_probe_or_an_in_process_adapter(monkeypatch):
    """The set-up DbtCli skips is still where dagster-dbt does it (the names are private)."""

    def fail(*args, **kwargs):
        raise AssertionError(f"dagster-dbt started {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", fail)
    monkeypatch.setattr(dagster_dbt_resource.DbtCliResource, "_initialize_dbt_core_adapter", fail)
    invocation = DbtCli(project_dir=dbt_project()).cli(["ls", "--select", "minute_bars"]).wait()
    assert invocation.is_successful()
    assert DbtCli(project_dir=dbt_project())._cli_version.major == 1  # dbt Core, not Fusion
