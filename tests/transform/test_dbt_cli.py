"""DbtCli overrides two private members of dagster-dbt's DbtCliResource: this fails on an
upgrade that renames them, changes their signature or stops going through them."""

import inspect
import subprocess
from functools import cached_property

from dagster_dbt import DbtCliResource


def test_the_overridden_members_are_still_dagster_dbts(dbt_cli):
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert list(inspect.signature(DbtCliResource._initialize_dbt_core_adapter).parameters) == [
        "self",
        "args",
    ]
    assert dbt_cli._cli_version.major == 1  # dbt Core, not Fusion


def test_a_command_spawns_dbt_once_and_builds_no_adapter(monkeypatch, dbt_cli):
    spawned = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, args, *rest, **kwargs):
            spawned.append(list(args))
            super().__init__(args, *rest, **kwargs)

    def fail(*args, **kwargs):
        raise AssertionError("dagster-dbt built an in-process dbt adapter")

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    # Nor the base class's set-up, however dagster-dbt reaches it.
    monkeypatch.setattr(DbtCliResource, "_initialize_dbt_core_adapter", fail)
    invocation = dbt_cli.cli(["ls", "--select", "minute_bars"]).wait()
    assert invocation.is_successful()
    assert len(spawned) == 1, spawned  # the command itself, no `dbt --version` before it
    assert spawned[0][0] == dbt_cli.dbt_executable
    assert "ls" in spawned[0] and "--version" not in spawned[0]
