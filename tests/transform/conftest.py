"""Run the dbt assets in-process and read the warehouse they build."""

import os

import dagster as dg
import duckdb
import pandas as pd
import pytest

from stock_pipeline.defs.transform.assets import dbt_project, tick_models
from stock_pipeline.resources.dbt_cli import DbtCli


class Warehouse:
    """Materialises the dbt assets as Dagster would, and reads the marts back."""

    def build(
        self, full_refresh: bool = False, models: tuple = (tick_models,)
    ) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            list(models),
            resources={"dbt": DbtCli(project_dir=dbt_project())},
            run_config={
                "ops": {step.op.name: {"config": {"full_refresh": full_refresh}} for step in models}
            },
        )
        assert result.success
        return result

    def read(self, table: str) -> pd.DataFrame:
        # Read-only and closed at once: the next dbt run needs the write lock.
        with duckdb.connect(os.environ["DUCKDB_DATABASE"], read_only=True) as con:
            return con.table(table).df()


@pytest.fixture
def warehouse(provisioned) -> Warehouse:
    return Warehouse()
