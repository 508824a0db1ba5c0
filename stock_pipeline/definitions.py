import dagster as dg

from stock_pipeline.settings import export_environment

# Before the domains load: dbt parses the project as they do, and dbt, boto3 and `dg.EnvVar` read
# the settings from the environment. A bad setting fails the code location here, naming it.
export_environment()

from stock_pipeline.defs import history, ingest, maintenance, quality, transform  # noqa: E402

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
