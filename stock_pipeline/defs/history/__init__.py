"""History: official daily bars per trading day, their schedule, reconciliation with the stream."""

import dagster as dg

from stock_pipeline.defs.history.assets import daily_bars, daily_bars_job, daily_bars_schedule
from stock_pipeline.defs.history.checks import daily_close_matches_official
from stock_pipeline.resources.market_data import MarketDataResource

defs = dg.Definitions(
    assets=[daily_bars],
    asset_checks=[daily_close_matches_official],
    jobs=[daily_bars_job],
    schedules=[daily_bars_schedule],
    resources={"market_data": MarketDataResource(source=dg.EnvVar("MARKET_DATA_SOURCE"))},
)
