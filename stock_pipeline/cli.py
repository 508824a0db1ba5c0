"""The `stock-pipeline` command: AWS emulator, provisioning, producer, dev stack, serve, alerts."""

import argparse
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

from stock_pipeline.settings import LOCAL_ENDPOINT, SettingsError, export_environment, get_settings

log = logging.getLogger("stock_pipeline")

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"
DEV_INSTANCE_YAML = """\
# Written by `stock-pipeline dev`. Steps that write the warehouse share the pool `duckdb`,
# limited to one at a time: concurrent DuckLake commits would conflict and retry.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # Micro-batches are latency-bound: launch a queued run within a second (default 5 s).
    dequeue_interval_seconds: 1
# One event log database instead of Dagster's default SQLite file per run, which repeats the
# schema in every file and each asset event in an index: a micro-batch every few seconds.
event_log_storage:
  module: dagster.core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config:
    base_dir: {dagster_home}
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
# A run worker that dies (SIGKILL, out of memory) is marked failed by its code server within a
# second; run monitoring catches runs stuck starting or canceling. The default run launcher
# cannot resume a run in place, so run retries re-execute it from the failed step, with the
# same Kinesis ranges (raw_ticks_job's dagster/max_retries tag).
run_monitoring:
  enabled: true
  start_timeout_seconds: 90
  cancel_timeout_seconds: 60
  max_resume_run_attempts: 0
  poll_interval_seconds: 10
  # A dead run's pool slot (`duckdb`) is freed too, or every later dbt step waits for it.
  free_slots_after_run_end_seconds: 5
run_retries:
  enabled: true
  # Step failures have the assets' own retry policies; this is for crashed run workers.
  retry_on_asset_or_op_failure: false
code_servers:
  # On shutdown the code server waits for the runs in flight instead of interrupting them.
  wait_for_local_processes_on_shutdown: true
# Sensor and schedule ticks older than a day are purged by the daemon; runs and their event
# logs by dagster_state_purge_job (DAGSTER_RETENTION_HOURS).
retention:
  schedule:
    purge_after_days: 1
  sensor:
    purge_after_days: 1
  auto_materialize:
    purge_after_days: 1
telemetry:
  enabled: false
# No "join the community" dialog over the UI's first page.
nux:
  enabled: false
"""


def write_dev_instance(dagster_home: Path) -> None:
    """The instance of the local stack: its `dagster.yaml` in `dagster_home`."""
    text = DEV_INSTANCE_YAML.format(dagster_home=json.dumps(str(dagster_home.absolute())))
    (dagster_home / "dagster.yaml").write_text(text)


def _ticks(args) -> Iterator[dict]:
    from stock_pipeline.csv_files import UnreadableCsvError
    from stock_pipeline.producer import sources

    if args.source == "synthetic":
        return sources.synthetic_ticks(args.symbols, args.rate, args.seed, args.inject)
    if args.source == "yfinance":
        return sources.yfinance_ticks(args.symbols)
    if not args.file:
        raise SystemExit("--source csv needs --file PATH")
    try:
        return iter(sources.csv_ticks(args.file))
    except UnreadableCsvError as err:
        raise SystemExit(f"stock-pipeline produce: {err}") from None


def produce(args) -> None:
    """Put ticks on the stream at `--rate` per second, printing progress."""
    import boto3

    from stock_pipeline.producer.kinesis import KinesisProducer

    settings = get_settings()
    producer = KinesisProducer(
        boto3.client("kinesis"),
        settings.ticks_stream,
        max_in_flight=settings.producer_max_in_flight,
    )
    ticks = _ticks(args)
    if args.count:
        ticks = itertools.islice(ticks, args.count)
    deadline = time.monotonic() + args.duration if args.duration else None
    started = time.monotonic()
    chunk = max(1, int(args.rate / 4))  # four PutRecords rounds a second
    last_report = 0.0
    # Ctrl-C ends the stream like --count or --duration would: a summary, no traceback.
    with contextlib.suppress(KeyboardInterrupt):
        while deadline is None or time.monotonic() < deadline:
            batch = list(itertools.islice(ticks, chunk))
            if not batch:
                break
            producer.put_ticks(batch)
            stats = producer.stats
            # Pace to the rate: sleep until this many ticks are due.
            time.sleep(max(0.0, started + stats.sent / args.rate - time.monotonic()))
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                print(
                    f"sent {stats.sent}  rate {stats.rate:.0f}/s  retried {stats.retried}",
                    file=sys.stderr,
                    flush=True,
                )
    stats = producer.stats
    print(
        f"done: sent {stats.sent} records in {stats.calls} PutRecords calls, "
        f"{stats.retried} re-sent",
        file=sys.stderr,
    )


def local_aws(args) -> None:
    """The moto emulator in the foreground on 127.0.0.1, provisioned, its lake kept on disk."""
    import boto3

    from stock_pipeline import devstack
    from stock_pipeline.emulator import moto_server
    from stock_pipeline.provision import provision

    with moto_server(args.host, args.port) as endpoint:
        _use_endpoint(endpoint)  # provision, the lake's restore and save
        s3, bucket = boto3.client("s3"), get_settings().lake_bucket
        snapshot = devstack.snapshot_dir()
        restored = False
        try:
            provision()
            log.info(
                "lake restored from %s: %s", snapshot, devstack.restore_lake(s3, bucket, snapshot)
            )
            restored = True
            print(
                f"AWS emulator on {endpoint} (Kinesis, S3, SNS, SQS), provisioned. "
                "Ctrl-C stops it.",
                flush=True,
            )
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            if restored:  # a half-restored bucket must not overwrite the snapshot
                log.info("lake saved to %s: %s", snapshot, devstack.save_lake(s3, bucket, snapshot))


def provision(args) -> None:
    from stock_pipeline.provision import ProvisionError
    from stock_pipeline.provision import provision as provision_aws

    try:
        outputs = provision_aws(shard_count=args.shards)
    except ProvisionError as err:
        raise SystemExit(f"provision: {err}") from None
    width = max(map(len, outputs), default=0)
    for key, value in sorted(outputs.items()):
        print(f"{key:<{width}}  {value}")


def _use_endpoint(url: str) -> None:
    """Point this process and the ones it starts at the AWS endpoint `url` (the emulator)."""
    os.environ["AWS_ENDPOINT_URL"] = url
    get_settings.cache_clear()
    export_environment()


def _wait_for_port(url: str, timeout: float = 30) -> None:
    import socket

    parsed = urlparse(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((parsed.hostname, parsed.port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listening on {url} after {timeout:.0f}s")


def _wait_until_provisioned(emulator: subprocess.Popen, timeout: float = 180) -> None:
    """Until the stream is active and the lake bucket exists, as `local-aws` provisions them."""
    import boto3
    from botocore.exceptions import ClientError

    kinesis, s3 = boto3.client("kinesis"), boto3.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and emulator.poll() is None:
        with contextlib.suppress(ClientError):
            summary = kinesis.describe_stream_summary(StreamName=get_settings().ticks_stream)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                s3.head_bucket(Bucket=get_settings().lake_bucket)
                return
        time.sleep(0.5)
    raise SystemExit(f"the emulator did not provision the stack within {timeout:.0f}s")


def dagster_dev_command(port: int) -> list[str]:
    """`dagster dev` on the workspace, UI on loopback.

    Run it from a directory without a .env (DAGSTER_HOME): `dagster dev` lets a .env in its
    directory override the environment, where this command lets the environment win.
    """
    return [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE),
            "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip


def _start(command: list[str], cwd: Path | None = None) -> subprocess.Popen:
    # Own process group: stopping it stops its children too (dagster dev's daemon, webserver).
    return subprocess.Popen(command, cwd=cwd, process_group=0)


def stop_process_groups(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGINT each process group, as Ctrl-C would; SIGKILL what is left after `timeout`."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers in the group, if any


def dev(args) -> None:
    """Emulator, producer and `dagster dev` together; Ctrl-C stops every one of them."""
    import dagster as dg

    from stock_pipeline import devstack

    # Ctrl-C and SIGTERM both stop the stack, even when started with SIGINT ignored (e.g. `&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    endpoint = get_settings().aws_endpoint_url or LOCAL_ENDPOINT
    _use_endpoint(endpoint)
    dagster_home = get_settings().dagster_home.absolute()
    os.environ["DAGSTER_HOME"] = str(dagster_home)  # for `dagster dev`, which runs from there
    local = get_settings().on_loopback()
    if local:
        devstack.start_clean_if_lake_was_lost(dagster_home)
    dagster_home.mkdir(parents=True, exist_ok=True)
    write_dev_instance(dagster_home)
    if local:
        with dg.DagsterInstance.get() as instance:
            if canceled := devstack.cancel_runs_left_in_flight(instance):
                log.warning("canceled %d runs the last session left in flight", canceled)
    exe = [sys.executable, "-m", "stock_pipeline.cli"]
    emulator = producer = dagster = server = None
    drain = local  # the emulator's stream goes when it stops; a real one stays to resume from
    try:
        if local:
            # It provisions the stack itself as it starts: a second provision would race it.
            emulator = _start([*exe, "local-aws", "--port", str(urlparse(endpoint).port)])
            _wait_for_port(endpoint)
            _wait_until_provisioned(emulator)
        else:
            subprocess.run([*exe, "provision"], check=True)
        produce_args = ["produce"]  # source and rate from MARKET_DATA_SOURCE, PRODUCER_RATE
        if args.inject:
            produce_args += ["--inject", ",".join(args.inject)]
        producer = _start([*exe, *produce_args])
        dagster = _start(dagster_dev_command(args.port), cwd=dagster_home)
        server = _start([*exe, "serve", "--port", str(args.serve_port)])
        print(
            f"\n  Dagster UI: http://127.0.0.1:{args.port}"
            f"   Dashboard and API: http://127.0.0.1:{args.serve_port}"
            "   (Ctrl-C stops everything)\n",
            flush=True,
        )
        processes = [p for p in (emulator, producer, dagster, server) if p is not None]
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        exited = [p.args for p in processes if p.poll() is not None]
        drain = local and emulator.poll() is None
        raise SystemExit(f"stopping: a process exited: {exited}")
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
    finally:
        if server is not None:  # it only reads: first to go
            stop_process_groups([server])
        devstack.stop_local_stack(producer, dagster, emulator, drain=drain)


def fault_proxy(args) -> None:
    """The fault-injecting proxy in the foreground until Ctrl-C."""
    from stock_pipeline.fault_proxy import FaultProxy

    proxy = FaultProxy(
        args.upstream,
        port=args.port,
        s3_error_rate=args.s3_error_rate,
        kinesis_throttle_rate=args.kinesis_throttle_rate,
        seed=args.seed,
    )
    print(f"fault proxy on {proxy.url} -> {args.upstream}; set AWS_ENDPOINT_URL={proxy.url}")
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        counts = proxy.counts
        print(
            f"forwarded {counts.forwarded}, S3 faults {counts.s3_faults}, "
            f"Kinesis throttles {counts.kinesis_throttles}"
        )


def replay_quarantine(args) -> None:
    import boto3

    from stock_pipeline.producer.kinesis import KinesisProducer
    from stock_pipeline.producer.replay import replay_quarantine as replay
    from stock_pipeline.resources.aws import LakeResource

    settings = get_settings()
    lake = LakeResource(bucket=settings.lake_bucket, prefix=settings.lake_prefix)
    producer = (
        None if args.dry_run else KinesisProducer(boto3.client("kinesis"), settings.ticks_stream)
    )
    counts = replay(lake, lake.get_client(), producer, reason=args.reason, since=args.since)
    for reason, count in sorted(counts.items()):
        print(f"{reason:40} {count:>10}")
    verb = "would put" if args.dry_run else "put"
    print(f"{verb} {sum(counts.values())} quarantined records back on {settings.ticks_stream}")


def exclude(args) -> None:
    """Leave ticks out of the warehouse (from the next build on), or list those left out."""
    from stock_pipeline.exclusions import ExclusionError, exclusions
    from stock_pipeline.exclusions import exclude as exclude_ticks
    from stock_pipeline.sql import print_relation

    try:
        if args.list:
            if args.event_ids or args.reason is not None:
                raise ExclusionError("--list takes no event ids and no --reason")
            with exclusions() as listed:
                print_relation(listed, args.format)
            return
        outcome = exclude_ticks(args.event_ids, args.reason, force=args.force)
    except ExclusionError as err:
        raise SystemExit(f"exclude: {err}") from None
    for event_id, (at, why) in outcome.already.items():
        print(f"already excluded, left as it was: {event_id} ({at.isoformat()}: {why})")
    if not outcome.excluded:
        return
    count = len(outcome.excluded)
    print(f"excluded {count} tick{'s' if count > 1 else ''} in {outcome.url}:")
    for event_id in outcome.excluded:
        symbol, ts = outcome.known.get(event_id, (None, None))
        print(f"  {event_id}  " + (f"{symbol} {ts.isoformat()}" if symbol else "(not loaded yet)"))
    print("the next micro-batch build takes them out of stg_lake__ticks and the marts")


def serve(args) -> None:
    """The query API and dashboard under uvicorn, in the foreground."""
    import uvicorn

    from stock_pipeline.serve.app import create_app

    print(f"Dashboard and API on http://{args.host}:{args.port} (API docs: /docs)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, access_log=False)


def alerts(args) -> None:
    from stock_pipeline.resources.alerts import follow_alerts

    follow_alerts(
        get_settings().alerts_queue, as_json=args.json, max_messages=args.max, peek=args.peek
    )


def _dbt(*args: str, target_path: str | None = None) -> None:
    """dbt on the project with this environment's settings (.env, absolute local paths)."""
    from stock_pipeline.defs.transform.assets import DBT_PROJECT_DIR

    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    if target_path:
        project += ["--target-path", str(DBT_PROJECT_DIR / target_path)]
    dbt = str(Path(sys.executable).with_name("dbt"))
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run([dbt, *args, *project], check=True)


def docs(args) -> None:
    """dbt's docs with the warehouse's catalog, read-only (safe beside a running pipeline)."""
    from stock_pipeline.resources.warehouse import Catalog

    generate = ["docs", "generate", "--target", "reader"]
    if not Catalog.from_settings().exists():
        print("no warehouse yet: the docs show no column types", file=sys.stderr)
        generate += ["--empty-catalog", "--no-compile"]
    # A target directory of their own: the pipeline's builds reuse the parse in target/.
    _dbt(*generate, target_path="target/docs")
    _dbt("docs", "serve", "--host", "127.0.0.1", "--port", str(args.port), "--no-browser",
         target_path="target/docs")  # fmt: skip


def rebuild(args) -> None:
    """Every model rebuilt from the whole lake: after an upgrade, or to drop a bad warehouse."""
    _dbt(
        "build",
        "--full-refresh",
        "--exclude-resource-type",
        "unit_test",
        target_path="target/rebuild",
    )


def sql(args) -> None:
    from stock_pipeline.sql import QueryError, parse_time, run_query

    try:
        run_query(args.query, args.format, parse_time(args.at) if args.at else None)
    except QueryError as err:
        raise SystemExit(f"error: {err}") from None


def _csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="stock-pipeline", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    cmd = commands.add_parser("local-aws", help="run the AWS emulator and provision it")
    cmd.add_argument("--port", type=int, default=urlparse(LOCAL_ENDPOINT).port)
    cmd.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    cmd.set_defaults(func=local_aws)

    cmd = commands.add_parser(
        "provision", help="deploy infra/stack.yaml (create or update) and print its outputs"
    )
    cmd.add_argument("--shards", type=int, default=None, help="stream shards (default 2)")
    cmd.set_defaults(func=provision)

    cmd = commands.add_parser("produce", help="put ticks on the Kinesis stream")
    settings = get_settings()
    source, _, path = settings.market_data_source.partition(":")
    cmd.add_argument(
        "--source",
        choices=["synthetic", "yfinance", "csv"],
        default=source,
        help="default: the kind MARKET_DATA_SOURCE names",
    )
    cmd.add_argument("--symbols", type=_csv_list, default=None, help="comma separated")
    cmd.add_argument("--rate", type=float, default=settings.producer_rate, help="ticks per second")
    stop = cmd.add_mutually_exclusive_group()
    stop.add_argument("--count", type=int, help="stop after this many ticks")
    stop.add_argument("--duration", type=float, help="stop after this many seconds")
    cmd.add_argument(
        "--file",
        default=path or None,
        help="CSV of ticks or OHLCV bars (--source csv; default from csv:<path>)",
    )
    cmd.add_argument(
        "--seed", type=int, default=int(time.time()) % 100_000, help="synthetic market seed"
    )
    cmd.add_argument(
        "--inject",
        type=_csv_list,
        default=[],
        help="synthetic faults: price_jump,volume_spike,stale",
    )
    cmd.set_defaults(func=produce)

    cmd = commands.add_parser("dev", help="emulator + producer + dagster dev")
    cmd.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    cmd.add_argument("--serve-port", type=int, default=8000, help="dashboard and API port")
    cmd.add_argument(
        "--inject",
        type=_csv_list,
        default=[],
        help="make the synthetic market misbehave: price_jump,volume_spike,stale",
    )
    cmd.set_defaults(func=dev)

    cmd = commands.add_parser("docs", help="generate dbt's docs and serve them on 127.0.0.1")
    cmd.add_argument("--port", type=int, default=8080)
    cmd.set_defaults(func=docs)

    cmd = commands.add_parser(
        "rebuild", help="rebuild every dbt model from the whole lake (stop the pipeline first)"
    )
    cmd.set_defaults(func=rebuild)

    cmd = commands.add_parser(
        "sql", help="query the warehouse (read-only, beside the running pipeline)"
    )
    cmd.add_argument("query", help='e.g. "select * from latest_quotes"')
    cmd.add_argument("--format", choices=["table", "csv", "json"], default="table")
    cmd.add_argument(
        "--at", metavar="TIME", help="read the marts as they were then (ISO-8601 with an offset)"
    )
    cmd.set_defaults(func=sql)

    cmd = commands.add_parser("serve", help="HTTP query API and live dashboard")
    cmd.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    cmd.add_argument("--port", type=int, default=8000)
    cmd.set_defaults(func=serve)

    cmd = commands.add_parser(
        "replay-quarantine", help="put quarantined records back on the stream (event ids kept)"
    )
    cmd.add_argument("--reason", help="only this reason (a prefix such as missing_field too)")
    cmd.add_argument(
        "--since", type=date.fromisoformat, help="only records that arrived on this date or later"
    )
    cmd.add_argument("--dry-run", action="store_true", help="count, put nothing")
    cmd.set_defaults(func=replay_quarantine)

    cmd = commands.add_parser(
        "exclude", help="leave bad ticks out of staging and the marts; --list shows them"
    )
    cmd.add_argument("event_ids", nargs="*", metavar="EVENT_ID", help="the ticks to leave out")
    cmd.add_argument("--reason", help="why (required, shown by --list)")
    cmd.add_argument(
        "--force", action="store_true", help="also ids the warehouse does not know (yet)"
    )
    cmd.add_argument("--list", action="store_true", help="show what is excluded, when and why")
    cmd.add_argument("--format", choices=["table", "csv", "json"], default="table")
    cmd.set_defaults(func=exclude)

    cmd = commands.add_parser(
        "fault-proxy", help="proxy to the emulator injecting S3 5xx/SlowDown, Kinesis throttling"
    )
    cmd.add_argument("--upstream", default=LOCAL_ENDPOINT, help="the emulator's URL")
    cmd.add_argument("--port", type=int, default=4567)
    cmd.add_argument("--s3-error-rate", type=float, default=0.1, help="share of S3 requests")
    cmd.add_argument(
        "--kinesis-throttle-rate", type=float, default=0.1, help="share of Kinesis requests"
    )
    cmd.add_argument("--seed", type=int, default=0)
    cmd.set_defaults(func=fault_proxy)

    cmd = commands.add_parser("alerts", help="print alerts from the local SQS queue")
    cmd.add_argument("--json", action="store_true", help="raw JSON messages")
    cmd.add_argument("--max", type=int, default=None, help="stop after this many")
    cmd.add_argument(
        "--peek", action="store_true", help="print the alerts waiting now and leave them queued"
    )
    cmd.set_defaults(func=alerts)
    return root


def main(argv: list[str] | None = None) -> None:
    # Our own progress at INFO; libraries (dagster, alembic, botocore) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    try:
        export_environment()  # .env and the defaults, for dbt, boto3 and the child processes
    except SettingsError as err:
        print(f"stock-pipeline: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    args = parser().parse_args(argv)
    if getattr(args, "symbols", "unset") is None:
        args.symbols = get_settings().symbols
    args.func(args)


if __name__ == "__main__":
    main()
