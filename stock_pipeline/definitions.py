import dagster as dg

from stock_pipeline.defs import history, ingest, maintenance, quality, transform
from stock_pipeline.settings import apply_defaults

apply_defaults()

defs = dg.Definitions.merge(
    ingest.defs,
    transform.defs,
    quality.defs,
    history.defs,
    maintenance.defs,
    # Steps run in the run's own process: a second Python start per step costs more than any
    # parallelism these runs could use (DuckDB writes are serialised anyway).
    dg.Definitions(executor=dg.in_process_executor),
)
