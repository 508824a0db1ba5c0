"""The FastAPI app: `/v1/...` JSON, CSV and Parquet from the warehouse, the dashboard at `/`.

It only reads: the warehouse, each request on the newest complete build (serve/snapshot.py), and
the alert ledger in the lake bucket.
"""

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import duckdb
import plotly
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AwareDatetime

from stock_pipeline.serve import models, queries
from stock_pipeline.serve.formats import Format, file_response
from stock_pipeline.serve.ledger import LedgerError, SentAlerts
from stock_pipeline.serve.snapshot import Pinned, Warehouse, WarehouseError
from stock_pipeline.settings import get_settings
from stock_pipeline.wire import SYMBOL_PATTERN

STATIC = Path(__file__).with_name("static")
PLOTLY_JS = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
PROBLEMS = {
    404: {"model": models.Problem, "description": "Unknown symbol."},
    422: {"model": models.Problem, "description": "A parameter is malformed or out of range."},
    503: {"model": models.Problem, "description": "The warehouse or ledger cannot be read."},
}
QUERY_PROBLEMS = {404: PROBLEMS[404], 422: PROBLEMS[422]}  # of a query naming a symbol
FORMAT = Query(
    "json", description="`json`, or a bulk pull: `csv` (text/csv) or `parquet` (Apache Parquet)."
)


class BadParameter(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")


def create_app(warehouse: Warehouse | None = None, ledger: SentAlerts | None = None) -> FastAPI:
    warehouse = warehouse or Warehouse()
    ledger = ledger or SentAlerts()
    app = FastAPI(
        title="stock-pipeline",
        version="1",
        description="Real-time market analytics from the stock-pipeline warehouse. Every "
        "response reads one consistent warehouse snapshot, the last complete build.",
        responses={503: PROBLEMS[503]},
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors(), custom_encoder={ValueError: str})
        detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(BadParameter)
    async def bad_parameter(request: Request, exc: BadParameter) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(WarehouseError)
    @app.exception_handler(LedgerError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(duckdb.Error)
    async def read_failed(request: Request, exc: duckdb.Error) -> JSONResponse:
        # E.g. a build detached under a request that outlived it: the next request reads anew.
        detail = f"warehouse read failed: {str(exc).splitlines()[0]}"
        return JSONResponse({"detail": detail}, status_code=503)

    def known(pinned: Pinned, symbol: str) -> None:
        if symbol not in pinned.symbols():
            raise HTTPException(404, f"symbol: {symbol!r} is not in the warehouse")

    @app.get("/v1/symbols", response_model=models.Symbols, tags=["market data"])
    def list_symbols(format: Format = FORMAT):
        """Each symbol in the warehouse with its first and last tick time and daily-bar dates."""
        rows = queries.symbols(warehouse.pinned().symbols())
        if format != "json":
            return file_response(rows, format, "symbols")
        return {"symbols": rows.to_pylist()}

    @app.get(
        "/v1/quotes/latest",
        response_model=models.LatestQuotes,
        responses=QUERY_PROBLEMS,
        tags=["market data"],
    )
    def latest_quotes(
        symbols: Annotated[
            str | None, Query(description="Comma-separated symbols; all when left out.")
        ] = None,
        format: Format = FORMAT,
    ):
        """The `latest_quotes` mart: each symbol's last price and its change on the day."""
        wanted = None
        if symbols is not None:
            wanted = [s.strip() for s in symbols.split(",") if s.strip()]
            malformed = [s for s in wanted if not re.match(SYMBOL_PATTERN, s)]
            if malformed or not wanted:
                raise BadParameter("symbols", f"not ticker symbols: {malformed or symbols!r}")
        pinned = warehouse.pinned()
        for symbol in wanted or ():
            known(pinned, symbol)
        # The hot read of every open dashboard, the same for all requests on a build: read once.
        rows = pinned.memo("latest_quotes", lambda c: queries.latest_quotes(c, pinned))
        rows = rows if rows is not None else pa.table({"symbol": pa.array([], pa.string())})
        newest = pinned.newest_arrival()
        snapshot = pinned.snapshot
        lag = (datetime.now(UTC) - newest).total_seconds() if newest else None
        if format != "json":
            if wanted is not None:
                rows = rows.filter(pc.is_in(rows["symbol"], value_set=pa.array(wanted)))
            headers = {"X-As-Of": snapshot.built_at.isoformat(), "X-Lag-Seconds": f"{lag}"}
            return file_response(rows, format, "latest_quotes", headers)
        quotes = pinned.memo("latest_quotes_json", lambda _: rows.to_pylist())
        return {
            "as_of": snapshot.built_at,
            "snapshot_id": snapshot.snapshot_id,
            "lag_seconds": lag,
            "quotes": quotes if wanted is None else [q for q in quotes if q["symbol"] in wanted],
        }

    @app.get(
        "/v1/bars/{symbol}",
        response_model=models.Bars,
        responses=QUERY_PROBLEMS,
        tags=["market data"],
    )
    def bars(
        symbol: Annotated[str, PathParam(pattern=SYMBOL_PATTERN)],
        timeframe: Annotated[
            Literal["1Min", "1Day"],
            Query(
                description="`1Min`: minute bars with SMAs and Bollinger bands; `1Day`: "
                "official daily bars with the daily_history indicators."
            ),
        ] = "1Min",
        start: Annotated[
            AwareDatetime | None, Query(description="ISO-8601 with an offset; inclusive.")
        ] = None,
        end: Annotated[
            AwareDatetime | None, Query(description="ISO-8601 with an offset; exclusive.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000, description="Bars per page.")] = 1_000,
        page_token: Annotated[
            str | None, Query(description="`next_page_token` of the previous page.")
        ] = None,
        format: Format = FORMAT,
    ):
        """A symbol's bars in `[start, end)`, oldest first, a page at a time.

        Pages follow the bar time: each bar comes exactly once across the pages of one query.
        """
        if start and end and end <= start:
            raise BadParameter("end", f"must be after start ({end} <= {start})")
        after = _page_after(page_token, symbol, timeframe) if page_token else None
        pinned = warehouse.pinned()
        known(pinned, symbol)
        with pinned.cursor() as cursor:
            rows = queries.bars(cursor, pinned, symbol, timeframe, start, end, after, limit + 1)
        rows = rows if rows is not None else pa.table({"ts": pa.array([], pa.timestamp("us"))})
        next_token = None
        if rows.num_rows > limit:
            rows = rows.slice(0, limit)
            last = rows.column("ts")[-1].as_py()
            next_token = _page_token(symbol, timeframe, last)
        if format != "json":
            headers = {"X-Next-Page-Token": next_token} if next_token else {}
            return file_response(rows, format, f"{symbol}_{timeframe}", headers)
        return {
            "symbol": symbol,
            "timeframe": timeframe,
            "snapshot_id": pinned.snapshot.snapshot_id,
            "bars": rows.to_pylist(),
            "next_page_token": next_token,
        }

    @app.get(
        "/v1/alerts",
        response_model=models.Alerts,
        responses=QUERY_PROBLEMS,
        tags=["alerts"],
    )
    def alerts(
        since: Annotated[
            AwareDatetime | None,
            Query(description="Only alerts whose event time is at or after this."),
        ] = None,
        symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN)] = None,
        severity: Literal["WARN", "ERROR"] | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
        format: Format = FORMAT,
    ):
        """The alerts that were sent (SNS accepted them), newest first, from the alert ledger."""
        if symbol is not None:
            known(warehouse.pinned(), symbol)
        selected = [
            alert
            for alert in ledger.newest_first()
            if (since is None or datetime.fromisoformat(alert["event_time"]) >= since)
            and (symbol is None or alert["symbol"] == symbol)
            and (severity is None or alert["severity"] == severity)
        ][:limit]
        if format != "json":
            table = pa.Table.from_pylist(
                [models.Alert.model_validate(a).model_dump() for a in selected],
                schema=_ALERT_SCHEMA,
            )
            return file_response(table, format, "alerts")
        return {"alerts": selected}

    @app.get("/v1/health", response_model=models.Health, tags=["operations"])
    def health():
        """How far the marts are behind the stream, and when each mart was last built."""
        pinned = warehouse.pinned()
        builds = pinned.memo("mart_builds", lambda c: queries.mart_builds(c, pinned))
        newest = pinned.newest_arrival()
        now = datetime.now(UTC)
        lag = (now - newest).total_seconds() if newest else None
        max_lag = get_settings().latest_quotes_max_age_minutes * 60
        quotes_built = builds["latest_quotes"]
        quotes_age = (now - quotes_built).total_seconds() if quotes_built else None
        consuming = lag is not None and lag <= max_lag
        fresh = quotes_age is not None and quotes_age <= max_lag
        return {
            "status": "ok" if consuming and fresh else "stale",
            "as_of": pinned.snapshot.built_at,
            "snapshot_id": pinned.snapshot.snapshot_id,
            "latest_quotes_age_seconds": quotes_age,
            "marts": [{"name": k, "last_materialized_at": v} for k, v in builds.items()],
            "stream": {
                "consuming": consuming,
                "newest_arrival_ts": newest,
                "lag_seconds": lag,
                "max_lag_seconds": max_lag,
            },
        }

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        # From the installed plotly package: the dashboard works offline, with no Node build.
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


_ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("kind", pa.string()),
        ("rule", pa.string()),
        ("severity", pa.string()),
        ("asset_key", pa.string()),
        ("event_time", pa.timestamp("us", "UTC")),
        ("symbol", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("summary", pa.string()),
        ("message_id", pa.string()),
        ("sent_at", pa.timestamp("us", "UTC")),
    ]
)


def _page_token(symbol: str, timeframe: str, after: datetime) -> str:
    state = {"symbol": symbol, "timeframe": timeframe, "after": after.isoformat()}
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _page_after(token: str, symbol: str, timeframe: str) -> datetime:
    """The bar time the page starts after; a token from another query is a bad parameter."""
    try:
        state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = datetime.fromisoformat(state["after"])
        issued_for = (state["symbol"], state["timeframe"])
    except (binascii.Error, ValueError, KeyError, TypeError) as err:
        raise BadParameter("page_token", "not a next_page_token of this API") from err
    if issued_for != (symbol, timeframe):
        raise BadParameter(
            "page_token", f"was issued for {issued_for[0]} {issued_for[1]}, not this query"
        )
    return after
