"""dagster-dbt's `DbtCliResource`, without two set-up steps this project does not use.

Before every command, `DbtCliResource.cli()` (dagster-dbt 0.29, pinned) runs `dbt --version` in
a subprocess, to tell dbt Core from the Fusion engine, and builds an in-process dbt adapter
(loading every macro), which only `fetch_column_metadata` and `fetch_row_counts` use. Each
micro-batch run starts a fresh run worker, so both happen for every batch: about 3.5 s of CPU,
as much as the `dbt build` itself. This project runs dbt Core from its own environment (the
`dbt` next to this interpreter, whatever else is on PATH) and fetches no such metadata, so both
are skipped.
"""

import importlib.metadata
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version


class DbtCli(DbtCliResource):
    def __init__(self, **kwargs):
        kwargs.setdefault("dbt_executable", str(Path(sys.executable).with_name("dbt")))
        super().__init__(**kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None
