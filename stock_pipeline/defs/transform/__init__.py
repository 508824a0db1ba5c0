"""Transform: the dbt project (staging -> marts) on the DuckLake warehouse, and its upkeep."""

import dagster as dg

from stock_pipeline.defs.transform.assets import (
    daily_bar_models,
    dbt_project,
    tick_exclusions,
    tick_model_checks_job,
    tick_model_checks_schedule,
    tick_models,
    transform_automation_sensor,
)
from stock_pipeline.defs.transform.maintenance import (
    warehouse_maintenance_job,
    warehouse_maintenance_schedule,
)
from stock_pipeline.resources.dbt_cli import DbtCli

defs = dg.Definitions(
    assets=[tick_models, daily_bar_models, tick_exclusions],
    jobs=[warehouse_maintenance_job, tick_model_checks_job],
    schedules=[warehouse_maintenance_schedule, tick_model_checks_schedule],
    sensors=[transform_automation_sensor],
    resources={"dbt": DbtCli(project_dir=dbt_project())},
)
