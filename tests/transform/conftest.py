"""Run the dbt assets in-process and read the warehouse they build."""

import json

import dagster as dg
import pandas as pd
import pytest
from dbt.cli.main import dbtRunner

from stock_pipeline.defs.transform.assets import TICK_MODELS, dbt_project, tick_models
from stock_pipeline.defs.transform.lake_objects import RAW_TICKS
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.wire import TICK_OBJECTS


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
    """dbt in this process, parsed once, running the tick models on the lake objects the
    raw_ticks runs wrote since its last build, as the tick_models step passes them: for tests
    that build many micro-batches, each without a dbt start-up and parse (seconds apiece). The
    step itself, and the tests it runs, are test_marts.py's."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance = instance
        project = str(dbt_project().project_dir)
        self.flags = ["--project-dir", project, "--profiles-dir", project, "--quiet"]
        parsed = dbtRunner().invoke(["parse", *self.flags])
        assert parsed.success, parsed.exception
        self.runner = dbtRunner(manifest=parsed.result)
        self.built_up_to = 0  # storage id of the newest raw_ticks materialization built

    def build(self) -> None:
        records = self.instance.fetch_materializations(RAW_TICKS, limit=10_000).records
        new = [r for r in records if r.storage_id > self.built_up_to]
        urls = [url for r in new for url in r.asset_materialization.metadata[TICK_OBJECTS].value]
        self.built_up_to = max((r.storage_id for r in new), default=self.built_up_to)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAKE_OBJECTS", json.dumps(urls))
            result = self.runner.invoke(["run", "--select", *TICK_MODELS.split(), *self.flags])
        assert result.success, result.exception


@pytest.fixture
def dbt_cli() -> DbtCli:
    """dbt as the pipeline runs it: each invocation is a dbt process."""
    return DbtCli(project_dir=dbt_project())


@pytest.fixture
def warehouse(ingest_ticks) -> Warehouse:
    return Warehouse(ingest_ticks.instance)
