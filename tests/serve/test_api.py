"""The HTTP API over a real uvicorn: every value equals the warehouse, pages are exact, bad
input is named."""

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import requests

from stock_pipeline.resources.alerts import asdict
from stock_pipeline.resources.warehouse import connect, published_snapshot
from tests.serve.conftest import (
    START,
    SYMBOLS,
    market_ticks,
    read_warehouse,
    sample_alerts,
    serving,
)

MINUTE_BARS = """
    select bars.minute_ts as ts, bars.open, bars.high, bars.low, bars.close, bars.volume,
        bars.vwap, bars.trade_count, averages.sma_5, averages.sma_20, averages.sma_50,
        averages.bollinger_upper, averages.bollinger_lower
    from minute_bars as bars
    left join moving_averages as averages using (symbol, minute_ts)
    where symbol = ?
    order by ts
"""


@pytest.fixture(scope="module")
def api(market):
    """Three hours of ticks in two micro-batches, 120 days of daily history, three alerts."""
    ticks = market_ticks(START, 180)
    market.add_ticks(ticks[: len(ticks) // 2])
    market.add_ticks(ticks[len(ticks) // 2 :])
    market.add_daily_history("2026-06-01", "2026-11-18")
    delivery = market.alerts.publish(sample_alerts())
    assert delivery.error is None and len(delivery.sent) == 3
    with serving() as url:
        yield url


def get(url: str, path: str, **params) -> requests.Response:
    return requests.get(f"{url}{path}", params=params, timeout=30)


def json_of(url: str, path: str, **params) -> dict:
    response = get(url, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


def as_frame(rows: list[dict], times=("ts",), dates=()) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for name in times:
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").dt.as_unit("us")
    for name in dates:
        frame[name] = pd.to_datetime(frame[name]).dt.as_unit("us")
    return frame


def assert_frames_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns and rows in the same order; numbers equal to 1e-9, nulls where the
    warehouse has them."""
    assert sorted(actual.columns) == sorted(expected.columns)
    assert len(actual) == len(expected)
    for name in expected.columns:
        want, got = expected[name], actual[name]
        if pd.api.types.is_numeric_dtype(want):
            np.testing.assert_allclose(
                got.to_numpy(float), want.to_numpy(float), rtol=0, atol=1e-9, err_msg=name
            )
        else:
            left = pd.to_datetime(got, utc=True) if "ts" in name or "_at" in name else got
            right = pd.to_datetime(want, utc=True) if "ts" in name or "_at" in name else want
            assert left.tolist() == right.tolist(), name


def test_symbols_with_their_first_and_last_tick(api):
    expected = read_warehouse(
        """
        select symbol, min(ts) as first_tick_ts, max(ts) as last_tick_ts
        from stg_lake__ticks group by symbol order by symbol
        """
    ).merge(
        read_warehouse(
            "select symbol, min(trade_date) as first_trade_date, max(trade_date) as "
            "last_trade_date from daily_history group by symbol"
        ),
        on="symbol",
    )
    rows = json_of(api, "/v1/symbols")["symbols"]
    assert [row["symbol"] for row in rows] == SYMBOLS
    actual = as_frame(rows, times=("first_tick_ts", "last_tick_ts"))
    for name in ("first_tick_ts", "last_tick_ts"):
        assert actual[name].tolist() == pd.to_datetime(expected[name], utc=True).tolist()
    for name in ("first_trade_date", "last_trade_date"):
        assert actual[name].tolist() == [d.isoformat() for d in expected[name].dt.date]


def test_latest_quotes_and_their_lag_behind_the_stream(api):
    expected = read_warehouse(
        "select symbol, last_price, last_ts, prev_close, change, relative_change, sma_20, "
        "updated_at from latest_quotes order by symbol"
    )
    assert expected["change"].notna().all()
    (newest_arrival,) = read_warehouse("select max(arrival_ts) from stg_lake__ticks").iloc[0]
    before = datetime.now(UTC)
    body = json_of(api, "/v1/quotes/latest")
    after = datetime.now(UTC)
    assert_frames_equal(as_frame(body["quotes"], times=("last_ts", "updated_at")), expected)
    assert (
        before - newest_arrival
        <= timedelta(seconds=body["lag_seconds"])
        <= (after - newest_arrival)
    )
    assert datetime.fromisoformat(body["as_of"]) <= after

    some = json_of(api, "/v1/quotes/latest", symbols="NVDA,AAPL")["quotes"]
    assert [q["symbol"] for q in some] == ["AAPL", "NVDA"]


@pytest.mark.parametrize("limit", [77, 10_000])
def test_paging_through_minute_bars_returns_every_bar_once(api, limit):
    for symbol in SYMBOLS:
        expected = read_warehouse(MINUTE_BARS, [symbol])
        rows, token, pages = [], None, 0
        while True:
            params = {"limit": limit, **({"page_token": token} if token else {})}
            page = json_of(api, f"/v1/bars/{symbol}", **params)
            assert page["timeframe"] == "1Min" and len(page["bars"]) <= limit
            rows += page["bars"]
            pages += 1
            token = page["next_page_token"]
            if token is None:
                break
        assert pages == -(-len(expected) // limit)
        assert len(expected) > 170
        actual = as_frame(rows)
        assert actual["ts"].is_unique
        assert_frames_equal(actual, expected)


def test_a_symbol_day_of_minute_bars_in_a_half_open_range(api):
    start, end = START + timedelta(minutes=30), START + timedelta(minutes=90)
    page = json_of(api, "/v1/bars/MSFT", start=start.isoformat(), end=end.isoformat())
    expected = read_warehouse(MINUTE_BARS, ["MSFT"])
    expected = expected[(expected["ts"] >= start) & (expected["ts"] < end)]
    assert len(expected) == 60  # a bar every minute, the end's excluded
    assert_frames_equal(as_frame(page["bars"]), expected.reset_index(drop=True))
    assert page["bars"][0]["ts"] == "2026-11-19T23:00:00Z"


def test_daily_bars_carry_the_daily_history_indicators(api):
    start = "2026-09-01T00:00:00-04:00"  # midnight in New York, when a daily bar's time is
    end = "2026-10-01T00:00:00-04:00"
    page = json_of(api, "/v1/bars/NVDA", timeframe="1Day", start=start, end=end)
    expected = read_warehouse(
        "select * exclude (symbol, source) from daily_history where symbol = 'NVDA' "
        "and trade_date >= '2026-09-01' and trade_date < '2026-10-01' order by trade_date"
    )
    assert len(expected) == 21  # September 2026's sessions
    actual = as_frame(page["bars"], dates=("trade_date",))
    assert page["bars"][0]["ts"] == "2026-09-01T04:00:00Z"
    assert_frames_equal(actual.drop(columns="ts"), expected)
    assert actual["rsi_14"].notna().all() and actual["sma_50"].notna().all()


def test_bulk_pulls_as_csv_and_parquet(api):
    page = json_of(api, "/v1/bars/AAPL", limit=100)
    frame = as_frame(page["bars"])

    csv = get(api, "/v1/bars/AAPL", limit=100, format="csv")
    assert csv.status_code == 200 and csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.headers["x-next-page-token"] == page["next_page_token"]
    from_csv = pd.read_csv(io.StringIO(csv.text))
    from_csv["ts"] = pd.to_datetime(from_csv["ts"], utc=True).dt.as_unit("us")
    assert_frames_equal(from_csv, frame)

    parquet = get(api, "/v1/bars/AAPL", limit=100, format="parquet")
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert_frames_equal(table.to_pandas(), frame)

    quotes = get(api, "/v1/quotes/latest", format="parquet")
    assert pq.read_table(io.BytesIO(quotes.content)).num_rows == len(SYMBOLS)


def test_sent_alerts_newest_first_and_filtered(api):
    published = {a.alert_id: asdict(a) for a in sample_alerts()}
    alerts = json_of(api, "/v1/alerts")["alerts"]
    assert [a["alert_id"] for a in alerts] == list(reversed(published))  # newest event first
    for alert in alerts:
        record = published[alert["alert_id"]]
        assert {k: alert[k] for k in record if k != "event_time"} == {
            k: v for k, v in record.items() if k != "event_time"
        }
        assert datetime.fromisoformat(alert["event_time"]) == datetime.fromisoformat(
            record["event_time"]
        )
        assert alert["message_id"] and alert["sent_at"]

    def ids(**params) -> list[str]:
        return [a["alert_id"] for a in json_of(api, "/v1/alerts", **params)["alerts"]]

    assert ids(symbol="AAPL") == [alerts[1]["alert_id"], alerts[2]["alert_id"]]
    assert ids(severity="WARN") == [alerts[2]["alert_id"]]
    assert ids(since=alerts[1]["event_time"]) == [alerts[0]["alert_id"], alerts[1]["alert_id"]]
    assert ids(symbol="MSFT") == []


def test_health_tells_how_fresh_each_mart_is(api):
    body = json_of(api, "/v1/health")
    published = published_snapshot()
    assert body["snapshot_id"] == published.snapshot_id
    assert datetime.fromisoformat(body["as_of"]) == published.built_at
    # Independently of the snapshot log the API reads: the incremental marts' own change feeds,
    # and the commit that created the tables dbt rebuilds whole.
    expected = {}
    with connect() as con:
        for mart in ("minute_bars", "moving_averages", "daily_prices"):
            (expected[mart],) = con.execute(
                f"""
                select snapshot_time from warehouse.snapshots() where snapshot_id = (
                    select max(snapshot_id) from warehouse.table_changes('{mart}', 0, $id)
                )
                """,
                {"id": published.snapshot_id},
            ).fetchone()
        for mart in ("latest_quotes", "daily_history"):
            (expected[mart],) = con.execute(
                """
                select snapshot_time from warehouse.snapshots() where snapshot_id = (
                    select begin_snapshot from __ducklake_metadata_warehouse.ducklake_table
                    where table_name = $mart and end_snapshot is null
                )
                """,
                {"mart": mart},
            ).fetchone()
    builds = {m["name"]: datetime.fromisoformat(m["last_materialized_at"]) for m in body["marts"]}
    assert builds == expected
    assert builds["daily_history"] > builds["latest_quotes"]  # built after the ticks
    age = body["latest_quotes_age_seconds"]
    assert 0 < age < (datetime.now(UTC) - builds["latest_quotes"]).total_seconds()
    assert body["stream"]["consuming"] is True  # the ticks arrived seconds ago
    assert body["stream"]["lag_seconds"] < body["stream"]["max_lag_seconds"]
    assert body["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "params", "status", "names"),
    [
        ("/v1/bars/AAPL", {"timeframe": "5Min"}, 422, "timeframe"),
        ("/v1/bars/AAPL", {"start": "2026-11-19T15:00Z", "end": "2026-11-19T14:00Z"}, 422, "end"),
        ("/v1/bars/AAPL", {"start": "yesterday"}, 422, "start"),
        ("/v1/bars/AAPL", {"end": "2026-11-19T15:00:00"}, 422, "end"),  # no offset
        ("/v1/bars/AAPL", {"limit": 0}, 422, "limit"),
        ("/v1/bars/AAPL", {"limit": 10_001}, 422, "limit"),
        ("/v1/bars/AAPL", {"page_token": "not-a-token"}, 422, "page_token"),
        ("/v1/bars/ZZZZ", {}, 404, "symbol"),
        ("/v1/bars/aapl", {}, 422, "symbol"),
        ("/v1/quotes/latest", {"symbols": "AAPL,ZZZZ"}, 404, "symbol"),
        ("/v1/quotes/latest", {"symbols": "AAPL;DROP"}, 422, "symbols"),
        ("/v1/alerts", {"severity": "INFO"}, 422, "severity"),
        ("/v1/alerts", {"since": "noon"}, 422, "since"),
        ("/v1/bars/AAPL", {"format": "xlsx"}, 422, "format"),
    ],
)
def test_bad_input_is_named(api, path, params, status, names):
    response = get(api, path, **params)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(f"{names}:"), response.json()


def test_a_page_token_only_pages_its_own_query(api):
    token = json_of(api, "/v1/bars/AAPL", limit=10)["next_page_token"]
    response = get(api, "/v1/bars/MSFT", limit=10, page_token=token)
    assert response.status_code == 422
    assert response.json()["detail"] == "page_token: was issued for AAPL 1Min, not this query"


def test_openapi_describes_every_endpoint(api):
    spec = json_of(api, "/openapi.json")
    assert set(spec["paths"]) == {
        "/v1/symbols", "/v1/quotes/latest", "/v1/bars/{symbol}", "/v1/alerts", "/v1/health"
    }  # fmt: skip
    lag = spec["components"]["schemas"]["LatestQuotes"]["properties"]["lag_seconds"]
    assert "arrival" in lag["description"]
    assert get(api, "/docs").status_code == 200
