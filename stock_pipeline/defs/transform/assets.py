"""The dbt project as Dagster assets: one `DbtProject`, one `@dbt_assets` per lake source.

The translator maps the dbt sources on the lake onto the assets that write them
(`lake.raw_ticks` -> `raw_ticks`, `lake.daily_bars` -> `daily_bars`, `lake.tick_exclusions` ->
`tick_exclusions`), so the asset graph is one lineage from the stream to `latest_quotes`; dbt
tests become asset checks.
"""

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtProjectPreparer,
    DagsterDbtTranslator,
    DbtCliInvocation,
    DbtCliResource,
    DbtProject,
    build_dbt_asset_selection,
    dbt_assets,
)
from filelock import FileLock
from pydantic import Field

from stock_pipeline.defs.transform.lake_objects import STG_TICKS, objects_to_load
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.warehouse import Catalog, WarehouseError, connect
from stock_pipeline.settings import Settings, get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
MINUTE_BARS = dg.AssetKey("minute_bars")

# The daily bar models follow their upstream: after a daily_bars materialisation (a schedule, a
# backfill), once it is done. The tick models have no automation: the raw_ticks_job run that
# lands a micro-batch builds them together with the tests on minute_bars, which must come first
# (an automation run of the marts alone would build them over a bar those tests reject).
UPDATE_AFTER_UPSTREAM = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("update_after_upstream")


def _parsed_for(project: DbtProject) -> Path:
    """Where the warehouse of the last parse is kept, next to its manifest."""
    return project.manifest_path.with_name("parsed_for_warehouse.txt")


def _warehouse_profile() -> str:
    """The settings profiles.yml reads: a parse holds for these values only."""
    environment = get_settings().environment()
    return "\n".join(environment[name] for name in ("WAREHOUSE_CATALOG", "WAREHOUSE_DATA_PATH"))


def _manifest_is_stale(project: DbtProject) -> bool:
    """True when the manifest is missing, older than a file of the dbt project, or parsed for
    another warehouse (dbt's partial parse, which every `dbt build` starts from, holds only for
    the profile it was made with; `make test` parses for its temporary warehouses)."""
    parsed_for = _parsed_for(project)
    if not project.manifest_path.exists() or not parsed_for.exists():
        return True
    if parsed_for.read_text() != _warehouse_profile():
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


class StaleManifestPreparer(DagsterDbtProjectPreparer):
    """Parses the project with this environment's dbt when the manifest is stale (a fresh
    checkout, a model edited before a reload in `dagster dev`, another warehouse): Dagster's asset
    checks must match the tests dbt runs, and every `dbt build` reuses this parse.

    Not on every load under `dagster dev`, as the default preparer does, and so in every run
    worker too: a dbt start-up per micro-batch. One process parses at a time (test workers, run
    workers starting together); the others then find the manifest fresh.
    """

    def prepare_if_dev(self, project: DbtProject) -> None:
        self.prepare(project)

    def prepare(self, project: DbtProject) -> None:
        project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(project.manifest_path.with_name("prepare.lock")):
            if _manifest_is_stale(project):
                DbtCli(project_dir=project).cli(
                    ["parse", "--quiet"], target_path=project.target_path
                ).wait()
                _parsed_for(project).write_text(_warehouse_profile())


@cache
def dbt_project() -> DbtProject:
    # DBT_TARGET_PATH is dbt's own variable for its target directory (a test worker has its own).
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR, target_path=os.environ.get("DBT_TARGET_PATH", "target")
    )
    StaleManifestPreparer().prepare(project)
    return project


class TransformTranslator(DagsterDbtTranslator):
    def __init__(self, automation_condition: dg.AutomationCondition | None = None):
        super().__init__()
        self.automation_condition = automation_condition

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source" and props["source_name"] == "lake":
            return spec.replace_attributes(key=dg.AssetKey(props["name"]))
        return spec

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # dbt skips the models downstream of a failing ERROR test on its own. Dagster also fails
        # the run after a failing ERROR check marked blocking (dagster-dbt marks every ERROR
        # test so); not on minute_bars, whose run must go on to the anomaly checks: they alert
        # on each impossible bar once, where a failed run would skip them and alert again for
        # every micro-batch.
        if spec is None or spec.asset_key != MINUTE_BARS:
            return spec
        return spec._replace(blocking=False)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # dbt's folder under models/: staging, marts.
        return dbt_resource_props["fqn"][1]

    def get_automation_condition(
        self, dbt_resource_props: Mapping[str, Any]
    ) -> dg.AutomationCondition | None:
        return self.automation_condition


class AnomalyThresholds(dg.Config):
    """Thresholds of the anomaly rules (dbt_project/models/marts/minute_bar_rule_days.sql) for one
    run; each one left unset is its ANOMALY_* variable's (stock_pipeline/settings.py)."""

    window_bars: int | None = None
    min_history: int | None = None
    price_jump_z: float | None = None
    volume_spike_ratio: float | None = None
    stale_minutes: int | None = None
    plausible_price_ratio: float | None = None

    def dbt_vars(self) -> dict[str, float]:
        """The thresholds set, as the dbt vars the rules read, validated as their variables are."""
        overrides = {
            f"anomaly_{name}": value
            for name, value in self.model_dump().items()
            if value is not None
        }
        checked = Settings.model_validate({**get_settings().model_dump(), **overrides})
        return {name: getattr(checked, name) for name in overrides}


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild the incremental models from the whole lake instead of the new ticks."""
    anomaly_thresholds: AnomalyThresholds = Field(
        default_factory=AnomalyThresholds,
        description="Thresholds of the anomaly rules for this run only (and of the tests on "
        "minute_bars that block the marts). Setting one makes dbt parse the whole project again, "
        "in this run and the next: for an investigation, not every run.",
    )


def _is_data_test_failure(invocation: DbtCliInvocation) -> bool:
    """True when dbt completed and what went wrong is data tests failing, nothing else."""
    if invocation.process.returncode != 1:  # 2: dbt itself failed before or while running
        return False
    try:
        results = invocation.get_artifact("run_results.json")["results"]
    except FileNotFoundError:
        return False
    statuses = {result["status"] for result in results}
    return "fail" in statuses and statuses <= {"success", "pass", "warn", "fail", "skipped"}


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """The environment with `values` set (None: unset) for the duration, then as it was."""
    saved = {name: os.environ.get(name) for name in values}

    def apply(new: dict[str, str | None]) -> None:
        for name, value in new.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(values)
    try:
        yield
    finally:
        apply(saved)


def _catalog_error() -> str | None:
    """Why the warehouse's catalog cannot be opened, or None if it can (or does not exist yet)."""
    try:
        if Catalog.from_settings().exists():
            connect(latest=True).close()
    except WarehouseError as err:
        return str(err)
    return None


def dbt_build_step(
    name: str, select: str, automation_condition: dg.AutomationCondition | None = None
) -> dg.AssetsDefinition:
    """The dbt models `select` picks, as one step that runs `dbt build` on them."""

    @dbt_assets(
        name=name,
        manifest=dbt_project().manifest_path,
        project=dbt_project(),
        select=select,
        dagster_dbt_translator=TransformTranslator(automation_condition),
        # One writer at a time: DuckLake commits from concurrent builds would conflict.
        pool="duckdb",
    )
    def models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, config: DbtBuildConfig
    ) -> Iterator:
        # Unit tests check the SQL, not the data: they run in `make test`, not on every batch.
        args = ["build", "--exclude-resource-type", "unit_test"]
        if config.full_refresh:
            args.append("--full-refresh")
        if thresholds := config.anomaly_thresholds.dbt_vars():
            args += ["--vars", json.dumps(thresholds)]
        loads_ticks = STG_TICKS in context.selected_asset_keys
        objects = None
        if loads_ticks:
            lake = objects_to_load(context.instance, config.full_refresh)
            if lake.urls is not None:
                objects = json.dumps(lake.urls)
            if lake.backlog:
                context.log.warning("catching up: more lake objects wait for the next build")
        # dagster-dbt hands dbt this process's environment; the step runs alone in its process.
        with _environment(LAKE_OBJECTS=objects):
            invocation = dbt.cli(args, context=context, raise_on_error=False)
        for event in invocation.stream():
            # The cursor rides on staging's materialization: it moves only once staging loaded.
            if (
                loads_ticks
                and isinstance(event, dg.Output)
                and context.asset_key_for_output(event.output_name) == STG_TICKS
            ):
                event = event.with_metadata({**event.metadata, **lake.metadata()})
            yield event
        # A failing data test is a failed asset check, not a failed step: dbt has skipped the
        # models downstream of it, and Dagster decides from the check's blocking flag whether
        # the run stops. Anything else fails the step, with the catalog's own words if that is
        # what failed.
        if not invocation.is_successful() and not _is_data_test_failure(invocation):
            if (reason := _catalog_error()) is not None:
                raise dg.Failure(reason)
            raise invocation.get_error()  # its target directory stays, for a post-mortem
        # Each invocation writes its artifacts (manifest, run results, partial parse) to a target
        # directory of its own: one per micro-batch would fill a laptop's disk in a day.
        shutil.rmtree(invocation.target_path)

    return models


# Two steps, one for the ticks (with their exclusions) and one for the daily bars, so that the run
# landing a micro-batch builds exactly the tick models and the daily bars never wait for the
# stream.
TICK_MODELS = "source:lake.raw_ticks+ source:lake.tick_exclusions+"
tick_models = dbt_build_step("tick_models", TICK_MODELS)

# Every micro-batch's build runs the dbt tests tagged `micro_batch`: those that keep a bad print
# or a doubled tick out of the marts as it arrives. The other tests on the tick models judge
# whole tables and hold by construction: checking them every few minutes instead keeps each
# build, and so latest_quotes, seconds sooner, and each run's event log a third smaller.
scheduled_tick_checks = build_dbt_asset_selection(
    [tick_models],
    dbt_select=" ".join(f"resource_type:test,{source}" for source in TICK_MODELS.split()),
    dbt_exclude="tag:micro_batch",
)
tick_model_checks_job = dg.define_asset_job(
    "tick_model_checks_job",
    selection=scheduled_tick_checks,
    description="Run the dbt tests on the tick models that micro-batch builds leave out.",
)
tick_model_checks_schedule = dg.ScheduleDefinition(
    job=tick_model_checks_job,
    cron_schedule="*/10 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

# Written by `stock-pipeline exclude`, not by a Dagster asset: declared so the lineage shows it.
tick_exclusions = dg.AssetSpec(
    "tick_exclusions",
    description=(
        "Ticks to leave out of the warehouse: one immutable JSON Lines object per `stock-pipeline"
        " exclude` call under the lake's exclusions/ticks/ (docs/architecture.md, 'Excluding"
        " ticks'). The next build of tick_models applies them."
    ),
    group_name="ingest",
    kinds={"s3"},
)
daily_bar_models = dbt_build_step(
    "daily_bar_models", "source:lake.daily_bars+", UPDATE_AFTER_UPSTREAM
)


transform_automation_sensor = dg.AutomationConditionSensorDefinition(
    "transform_automation_sensor",
    # Also the evening close reconciliation (an on_cron check in the history domain): anything
    # with an automation condition left out gets Dagster's default sensor, which starts stopped.
    target=dg.AssetSelection.assets(daily_bar_models)
    | dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("daily_prices"), "daily_close_matches_official")
    ),
    # Every 30 s (the default): daily bars change once a day, and evaluating more often costs
    # the daemon CPU the stream's runs need.
    default_status=dg.DefaultSensorStatus.RUNNING,
)
