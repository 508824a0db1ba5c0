"""End to end: faulty ticks through Kinesis, the lake and dbt; the checks ride along with dbt."""

import json

import dagster as dg
from dagster_dbt import DbtCliResource

from stock_pipeline.defs.quality.checks import minute_bars_anomaly_checks
from stock_pipeline.defs.transform.assets import dbt_models, dbt_project
from stock_pipeline.settings import apply_defaults, symbols
from tests.helpers import StreamIngest
from tests.quality.conftest import received_alerts, session_ticks


def test_injected_faults_reach_the_queue_once_through_the_real_marts(alerts_resource):
    apply_defaults()
    ticks = session_ticks(symbols()[:4], 30, 2.0, inject=("price_jump", "volume_spike", "stale"))
    StreamIngest()(ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).to_dict("records"))

    result = dg.materialize(
        [dbt_models, minute_bars_anomaly_checks],
        resources={"dbt": DbtCliResource(project_dir=dbt_project()), "alerts": alerts_resource},
        # minute_bars and the staging view it reads.
        selection=dg.AssetSelection.assets("minute_bars").upstream()
        - dg.AssetSelection.assets("raw_ticks"),
    )
    assert result.success
    # Selecting the mart brought its anomaly checks along, as automation runs do.
    evaluated = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert {k: evaluated[k] for k in ("price_jump", "volume_spike", "stale_feed")} == {
        "price_jump": False,
        "volume_spike": False,
        "stale_feed": False,
    }
    assert evaluated["impossible_data"]

    alerts = [json.loads(m) for m in received_alerts()]
    assert sorted((a["rule"], a["symbol"], a["event_time"]) for a in alerts) == [
        ("price_jump", "AAPL", "2026-11-20T14:40:00Z"),
        ("stale_feed", "NVDA", "2026-11-20T14:40:00Z"),
        ("volume_spike", "MSFT", "2026-11-20T14:40:00Z"),
    ]
