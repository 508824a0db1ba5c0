"""Run the dbt assets in-process and read the warehouse they build."""

import json

import dagster as dg
import pandas as pd
import pytest
from dbt.cli.main import dbtRunner

from stock_pipeline.defs.transform.assets import TICK_MODELS, dbt_project, tick_models
from stock_pipeline.defs.transform.lake_objects import STG_TICKS, objects_to_load
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

    def builder(self) -> "MicroBatchBuilds":
        return MicroBatchBuilds(self.instance)

    def read(self, table: str, latest: bool = False) -> pd.DataFrame:
        """`table` as readers see it: the last complete build (`latest`: the newest commit)."""
        with connect(latest=latest) as con:
            return con.table(table).df()


class MicroBatchBuilds:
    """dbt in this process, parsed once, running the tick models on the lake objects that
    `objects_to_load` picks, as the tick_models step does: for tests that build many
    micro-batches, each without a dbt start-up and parse (seconds apiece). The step itself, and
    the tests it runs, are test_marts.py's."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        project = str(dbt_project().project_dir)
        self.flags = ["--project-dir", project, "--profiles-dir", project, "--quiet"]
        parsed = dbtRunner().invoke(["parse", *self.flags])
        assert parsed.success, parsed.exception
        self.runner = dbtRunner(manifest=parsed.result)

    def build(self) -> None:
        lake = objects_to_load(self.instance, full_refresh=False)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAKE_OBJECTS", json.dumps(lake.urls))  # null: the whole lake
            result = self.runner.invoke(["run", "--select", *TICK_MODELS.split(), *self.flags])
        assert result.success, result.exception
        # The cursor rides on staging's materialization, as the step records it.
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(STG_TICKS, metadata=lake.metadata())
        )


@pytest.fixture
def dbt_cli() -> DbtCli:
    """dbt as the pipeline runs it: each invocation is a dbt process."""
    return DbtCli(project_dir=dbt_project())


@pytest.fixture
def warehouse(ingest_ticks) -> Warehouse:
    return Warehouse(ingest_ticks.instance)
