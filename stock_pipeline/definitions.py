import dagster as dg

from stock_pipeline.defs import history, ingest, quality, transform
from stock_pipeline.settings import apply_defaults

apply_defaults()

defs = dg.Definitions.merge(ingest.defs, transform.defs, quality.defs, history.defs)
