"""Run the dbt assets in-process and read the warehouse they build."""

import dagster as dg
import pandas as pd
import pytest

from stock_pipeline.defs.transform.assets import dbt_project, tick_models
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.warehouse import connect


class Warehouse:
    """Materialises the dbt assets as Dagster would, and reads the marts back.

    Builds share the ingest's Dagster instance, as in a deployment: each passes dbt the lake
    objects the raw_ticks runs wrote since the previous build.
    """

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance

    def build(
        self, full_refresh: bool = False, models: tuple = (tick_models,)
    ) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            list(models),
            resources={"dbt": DbtCli(project_dir=dbt_project())},
            run_config={
                "ops": {step.op.name: {"config": {"full_refresh": full_refresh}} for step in models}
            },
            instance=self.instance,
        )
        assert result.success
        return result

    def read(self, table: str, latest: bool = False) -> pd.DataFrame:
        """`table` as readers see it: the last complete build (`latest`: the newest commit)."""
        with connect(latest=latest) as con:
            return con.table(table).df()


@pytest.fixture
def dbt_cli() -> DbtCli:
    """dbt as the pipeline runs it: each invocation is a dbt process."""
    return DbtCli(project_dir=dbt_project())


@pytest.fixture
def warehouse(ingest_ticks) -> Warehouse:
    return Warehouse(ingest_ticks.instance)
