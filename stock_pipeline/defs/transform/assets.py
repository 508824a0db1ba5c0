"""The dbt project as Dagster assets: one `DbtProject`, one `@dbt_assets` over every model.

The translator maps the dbt sources on the lake onto the Python assets that write them
(`lake.raw_ticks` -> `raw_ticks`, `lake.daily_bars` -> `daily_bars`), so the asset graph is one
lineage from the stream to `latest_quotes`; dbt tests become asset checks.
"""

import os
import shutil
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"

# Bring the models up to date after any upstream materialisation, one run at a time. Unlike
# `eager()`, an upstream run in progress or missing does not hold this back: raw_ticks runs every
# few seconds, so waiting for a moment with none in flight would add latency; the incremental
# models take whatever the lake holds when they run, and an empty lake builds empty models.
UPDATE_AFTER_UPSTREAM = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("update_after_upstream")


def _manifest_is_stale(project: DbtProject) -> bool:
    """True when the manifest is missing or older than a file of the dbt project."""
    if not project.manifest_path.exists():
        return True
    built = project.manifest_path.stat().st_mtime
    return (
        any(
            path.stat().st_mtime > built
            for folder in ("models", "macros", "tests")
            for path in (DBT_PROJECT_DIR / folder).rglob("*")
        )
        or (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > built
    )


@cache
def dbt_project() -> DbtProject:
    # dagster-dbt runs `dbt` from PATH; `make dev` and `make test` run .venv's programs without
    # activating it, so put this interpreter's bin directory on PATH when dbt is not there.
    if shutil.which("dbt") is None:
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    # `dagster dev` re-parses on every load. Elsewhere (tests, `definitions validate`, a fresh
    # checkout) parse when the manifest is missing or stale: Dagster's asset checks must match
    # the tests dbt runs.
    project.prepare_if_dev()
    if _manifest_is_stale(project):
        project.preparer.prepare(project)
    return project


class TransformTranslator(DagsterDbtTranslator):
    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source" and props["source_name"] == "lake":
            return spec.replace_attributes(key=dg.AssetKey(props["name"]))
        return spec

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # dbt's folder under models/: staging, marts.
        return dbt_resource_props["fqn"][1]

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return UPDATE_AFTER_UPSTREAM


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild the incremental models from the whole lake instead of the new ticks."""


@dbt_assets(
    manifest=dbt_project().manifest_path,
    project=dbt_project(),
    dagster_dbt_translator=TransformTranslator(),
    # DuckDB allows one writer process: every run writing the warehouse takes this pool.
    pool="duckdb",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig):
    # Unit tests check the SQL, not the data: they run in `make test`, not on every micro-batch.
    args = ["build", "--exclude-resource-type", "unit_test"]
    if config.full_refresh:
        args.append("--full-refresh")
    yield from dbt.cli(args, context=context).stream()


transform_automation_sensor = dg.AutomationConditionSensorDefinition(
    "transform_automation_sensor",
    target=dg.AssetSelection.assets(dbt_models),
    # The default sensor evaluates every 30 s; the marts should trail the stream by seconds.
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
