"""dagster-dbt's `DbtCliResource`, without two set-up steps this project does not use.

Before every command, `DbtCliResource.cli()` runs `dbt --version` in a subprocess, to tell dbt
Core from the Fusion engine, and builds an in-process dbt adapter (loading every macro), which
only `fetch_column_metadata` and `fetch_row_counts` use. Each micro-batch run starts a fresh run
worker, so both cost a dbt start-up per batch (benchmarks/freshness.py measures a batch's
latency). dagster-dbt 0.29 offers no public switch for either, so the two private members are
overridden here, and only here.

On a dagster-dbt upgrade: check that `DbtCliResource.cli()` still reads `_cli_version` (a cached
property) and calls `_initialize_dbt_core_adapter(args)`; tests/transform/test_dbt_cli.py fails
when it does not.
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
        # This environment's dbt (dbt Core), whatever else is on PATH.
        kwargs.setdefault("dbt_executable", str(Path(sys.executable).with_name("dbt")))
        super().__init__(**kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None
