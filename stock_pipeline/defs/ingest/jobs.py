"""`raw_ticks_job`: one micro-batch from the stream into the lake, and through the marts."""

import dagster as dg

from stock_pipeline.defs.ingest.assets import raw_ticks
from stock_pipeline.defs.transform.assets import scheduled_tick_checks

# The run that lands a micro-batch also brings the tick models downstream of it up to date
# (dbt's step takes the `duckdb` pool): one run start per batch instead of two is what keeps
# latest_quotes seconds, not a minute, behind the stream. Their checks ride along, except the
# reconciliation with the official closes, which runs once a day on its own schedule, and the
# dbt tests that tick_model_checks_job runs every few minutes.
DAILY_RECONCILIATION = dg.AssetCheckKey(dg.AssetKey("daily_prices"), "daily_close_matches_official")

raw_ticks_job = dg.define_asset_job(
    "raw_ticks_job",
    # The exclusions written since the last batch are applied by the same build.
    selection=(
        dg.AssetSelection.assets(raw_ticks).downstream()
        | dg.AssetSelection.assets("tick_exclusions").downstream(include_self=False)
    )
    - dg.AssetSelection.checks(DAILY_RECONCILIATION)
    - scheduled_tick_checks,
    description="Consume one micro-batch of Kinesis ranges into the lake and update the models "
    "built on it (launched by kinesis_ticks_sensor).",
    # With run retries on in the instance, a run whose worker died is re-executed from the step
    # that did not finish, with the same ranges: the lake keys and staging's de-duplication
    # keep it exactly once.
    tags={"dagster/max_retries": "3", "dagster/retry_strategy": "FROM_FAILURE"},
)
