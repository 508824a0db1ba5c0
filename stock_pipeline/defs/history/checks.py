"""Reconciliation: the stream's daily close (`daily_prices`) against the official one."""

import dagster as dg
import duckdb
from pydantic import Field

from stock_pipeline.resources.market_data import EXCHANGE_TZ
from stock_pipeline.resources.warehouse import WarehouseError, connect

# Where both exist, one row per symbol and day; official closes come through the staging view.
COMPARED_CLOSES = """
select
    prices.symbol,
    prices.trade_date,
    prices.close as stream_close,
    bars.close as official_close,
    abs(prices.close / bars.close - 1) as relative_diff
from daily_prices as prices
inner join stg_lake__daily_bars as bars
    on prices.symbol = bars.symbol and prices.trade_date = bars.trade_date
order by relative_diff desc, prices.symbol, prices.trade_date
"""


class CloseReconciliationConfig(dg.Config):
    relative_tolerance: float = Field(
        default=0.005,
        description="Largest accepted |stream close / official close - 1|; 0.005 is 0.5%.",
    )


@dg.asset_check(
    asset="daily_prices",
    additional_deps=["stg_lake__daily_bars"],
    # Once per weekday evening, after the official bars (18:30 New York) and the stream's daily
    # prices have both been updated since 18:45.
    automation_condition=dg.AutomationCondition.on_cron("45 18 * * 1-5", EXCHANGE_TZ),
    description="Where the stream and the official daily bars both have a symbol and day, their "
    "closes agree within `relative_tolerance`. Warns with the list of disagreements.",
)
def daily_close_matches_official(config: CloseReconciliationConfig) -> dg.AssetCheckResult:
    try:
        with connect() as con:
            compared = con.execute(COMPARED_CLOSES).df()
    except (duckdb.CatalogException, WarehouseError) as missing:
        return dg.AssetCheckResult(
            passed=True,
            description=f"Nothing to compare yet: {missing}",
            metadata={"compared": 0, "disagreements": 0},
        )
    disagreements = compared[compared["relative_diff"] > config.relative_tolerance]
    listed = disagreements.head(200).assign(trade_date=lambda d: d["trade_date"].astype(str))
    return dg.AssetCheckResult(
        passed=disagreements.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(disagreements)} of {len(compared)} closes differ by more than "
        f"{config.relative_tolerance:.4%} from the official close",
        metadata={
            "compared": len(compared),
            "disagreements": len(disagreements),
            "relative_tolerance": config.relative_tolerance,
            "max_relative_diff": float(compared["relative_diff"].max()) if len(compared) else 0.0,
            # Largest first, at most 200 rows; the count above is complete.
            "disagreeing_closes": dg.MetadataValue.json(listed.to_dict("records")),
        },
    )
