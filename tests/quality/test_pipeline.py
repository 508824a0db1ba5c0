"""End to end: faulty ticks through Kinesis, the lake and dbt; the checks ride along with dbt."""

import json

import dagster as dg

from stock_pipeline.defs.quality.checks import minute_bars_anomaly_checks
from stock_pipeline.defs.transform.assets import dbt_project, tick_models
from stock_pipeline.resources.dbt_cli import DbtCli
from stock_pipeline.resources.warehouse import connect
from stock_pipeline.settings import get_settings
from tests.quality.conftest import received_alerts, session_ticks


def test_injected_faults_reach_the_queue_once_through_the_real_marts(alerts_resource, ingest_ticks):
    ticks = session_ticks(
        get_settings().symbols[:4], 30, 2.0, inject=("price_jump", "volume_spike", "stale")
    )
    ingest_ticks(ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat())).to_dict("records"))

    result = dg.materialize(
        [tick_models, minute_bars_anomaly_checks],
        resources={"dbt": DbtCli(project_dir=dbt_project()), "alerts": alerts_resource},
        # minute_bars, the staging it reads and the rules' models on it.
        selection=dg.AssetSelection.assets("minute_bar_anomalies").upstream()
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


def test_a_bad_print_blocks_the_marts_and_alerts_once(alerts_resource, ingest_ticks, monkeypatch):
    """Marts stop at a bad print, the check alerts once; unblocked, they catch up on every tick."""
    ticks = session_ticks(get_settings().symbols[:3], 30, 2.0)
    bad = ticks.index[ticks["symbol"] == "MSFT"][600]  # in the second third of the session
    ticks.loc[bad, "price"] = round(ticks.loc[bad, "price"] * 5, 2)  # a fat-finger print
    wire = ticks.assign(ts=ticks["ts"].map(lambda t: t.isoformat()))
    batches = [wire.iloc[len(wire) * i // 3 : len(wire) * (i + 1) // 3] for i in range(3)]

    def build() -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [tick_models, minute_bars_anomaly_checks],
            resources={"dbt": DbtCli(project_dir=dbt_project()), "alerts": alerts_resource},
            selection=dg.AssetSelection.assets(tick_models),
        )
        assert result.success  # failing data tests fail checks, not the run
        return result

    def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
        return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}

    marts = {"moving_averages", "daily_prices", "latest_quotes"}
    ingest_ticks(batches[0].to_dict("records"))
    assert marts <= materialized(build())
    for batch in batches[1:]:  # the bad print, then good ticks: both runs stop before the marts
        ingest_ticks(batch.to_dict("records"))
        blocked = build()
        failed = {
            e.check_name: e.severity for e in blocked.get_asset_check_evaluations() if not e.passed
        }
        assert failed == {
            "minute_bars_price_within_daily_range": dg.AssetCheckSeverity.ERROR,
            "impossible_data": dg.AssetCheckSeverity.ERROR,
        }
        # Staging, the bars and the rules' verdict on them are built; everything downstream of
        # the bad bar is skipped.
        assert materialized(blocked) == {
            "stg_lake__tick_exclusions",
            "stg_lake__ticks",
            "minute_bars",
            "minute_bar_rule_days",
            "minute_bar_anomalies",
        }

    minute = ticks.loc[bad, "ts"].floor("min").strftime("%Y-%m-%dT%H:%M:%SZ")
    alerts = [json.loads(m) for m in received_alerts()]
    assert [(a["rule"], a["symbol"], a["event_time"], a["severity"]) for a in alerts] == [
        ("implausible_price", "MSFT", minute, "ERROR")
    ]

    # Judged a real move after all: a wider range, set as the deployment would, unblocks them.
    monkeypatch.setenv("ANOMALY_PLAUSIBLE_PRICE_RATIO", "10")
    get_settings.cache_clear()
    unblocked = build()
    assert all(e.passed for e in unblocked.get_asset_check_evaluations())
    assert marts <= materialized(unblocked)
    assert received_alerts() == []
    with connect() as con:
        counted, last = con.execute(
            "select sum(trade_count), max(epoch_us(last_ts)) from daily_prices"
        ).fetchone()
        quoted = con.execute("select count(*) from latest_quotes").fetchone()[0]
    assert counted == len(ticks)  # every tick, none twice, across the blocked runs
    assert last == ticks["ts"].max().value // 1000
    assert quoted == 3
