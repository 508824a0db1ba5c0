"""Maintenance: keeps Dagster's own local state bounded (runs, event logs, compute logs)."""

import dagster as dg

from stock_pipeline.defs.maintenance.purge import (
    dagster_state_purge_job,
    dagster_state_purge_schedule,
)

defs = dg.Definitions(jobs=[dagster_state_purge_job], schedules=[dagster_state_purge_schedule])
