"""The `stock-pipeline` command: local AWS emulator, provisioning, producer, dev stack, alerts."""

import argparse
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from stock_pipeline.settings import LOCAL_ENDPOINT, apply_defaults, setting, symbols

log = logging.getLogger("stock_pipeline")

DAGSTER_INSTANCE_YAML = """\
# Written by `stock-pipeline dev`. Steps that write the DuckDB warehouse share the pool
# `duckdb`, limited to one at a time: DuckDB allows a single writer process.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # Micro-batches are latency-bound: launch a queued run within a second (default 5 s).
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def _load_dotenv(path: Path = Path(".env")) -> None:
    """Variables from .env that the environment does not already set (as `dagster dev` does)."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.strip().startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


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

    producer = KinesisProducer(boto3.client("kinesis"), setting("TICKS_STREAM"))
    ticks = _ticks(args)
    if args.count:
        ticks = itertools.islice(ticks, args.count)
    deadline = time.monotonic() + args.duration if args.duration else None
    started = time.monotonic()
    chunk = max(1, int(args.rate / 4))  # four PutRecords rounds a second
    last_report = 0.0
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
    """The moto emulator in the foreground on 127.0.0.1, provisioned."""
    from moto.server import ThreadedMotoServer

    from stock_pipeline.provision import provision

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{args.host}:{args.port}"
    apply_defaults()  # test keys for the emulator
    try:
        provision()
        print(
            f"AWS emulator on http://{args.host}:{args.port} (Kinesis, S3, SNS, SQS), "
            "provisioned. Ctrl-C stops it.",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def provision(args) -> None:
    from stock_pipeline.provision import provision as provision_aws

    provision_aws(shard_count=args.shards)


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


def dagster_dev_command(port: int) -> list[str]:
    """`dagster dev` on the workspace, UI on loopback."""
    return [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
            "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip


def _start(command: list[str]) -> subprocess.Popen:
    # Own process group: stopping it stops its children too (dagster dev's daemon, webserver).
    return subprocess.Popen(command, process_group=0)


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
    # Ctrl-C and SIGTERM both stop the stack, even when started with SIGINT ignored (e.g. `&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    endpoint = os.environ.setdefault("AWS_ENDPOINT_URL", LOCAL_ENDPOINT)
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").absolute())))
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_INSTANCE_YAML)
    exe = [sys.executable, "-m", "stock_pipeline.cli"]
    processes: list[subprocess.Popen] = []
    try:
        if urlparse(endpoint).hostname in ("127.0.0.1", "localhost"):
            processes.append(_start([*exe, "local-aws", "--port", str(urlparse(endpoint).port)]))
            _wait_for_port(endpoint)
        subprocess.run([*exe, "provision"], check=True)
        produce_args = ["produce"]  # source and rate from MARKET_DATA_SOURCE, PRODUCER_RATE
        if args.inject:
            produce_args += ["--inject", ",".join(args.inject)]
        processes.append(_start([*exe, *produce_args]))
        processes.append(_start(dagster_dev_command(args.port)))
        print(
            f"\n  Dagster UI: http://127.0.0.1:{args.port}   (Ctrl-C stops everything)\n",
            flush=True,
        )
        while all(p.poll() is None for p in processes):
            time.sleep(1)
        exited = [p.args for p in processes if p.poll() is not None]
        raise SystemExit(f"stopping: a process exited: {exited}")
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
    finally:
        stop_process_groups(list(reversed(processes)))


def alerts(args) -> None:
    from stock_pipeline.resources.alerts import follow_alerts

    follow_alerts(setting("ALERTS_QUEUE"), as_json=args.json, max_messages=args.max)


def _csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="stock-pipeline", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    cmd = commands.add_parser("local-aws", help="run the AWS emulator and provision it")
    cmd.add_argument("--port", type=int, default=urlparse(LOCAL_ENDPOINT).port)
    cmd.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    cmd.set_defaults(func=local_aws)

    cmd = commands.add_parser("provision", help="create stream, bucket, topic and queue")
    cmd.add_argument("--shards", type=int, default=None, help="stream shards (default 2)")
    cmd.set_defaults(func=provision)

    cmd = commands.add_parser("produce", help="put ticks on the Kinesis stream")
    source, _, path = setting("MARKET_DATA_SOURCE").partition(":")
    cmd.add_argument(
        "--source",
        choices=["synthetic", "yfinance", "csv"],
        default=source,
        help="default: the kind MARKET_DATA_SOURCE names",
    )
    cmd.add_argument("--symbols", type=_csv_list, default=None, help="comma separated")
    cmd.add_argument(
        "--rate", type=float, default=float(setting("PRODUCER_RATE")), help="ticks per second"
    )
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
    cmd.add_argument(
        "--inject",
        type=_csv_list,
        default=[],
        help="make the synthetic market misbehave: price_jump,volume_spike,stale",
    )
    cmd.set_defaults(func=dev)

    cmd = commands.add_parser("alerts", help="print alerts from the local SQS queue")
    cmd.add_argument("--json", action="store_true", help="raw JSON messages")
    cmd.add_argument("--max", type=int, default=None, help="stop after this many")
    cmd.set_defaults(func=alerts)
    return root


def main(argv: list[str] | None = None) -> None:
    # Our own progress at INFO; libraries (dagster, alembic, botocore) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    _load_dotenv()
    apply_defaults()
    args = parser().parse_args(argv)
    if getattr(args, "symbols", "unset") is None:
        args.symbols = symbols()
    args.func(args)


if __name__ == "__main__":
    main()
