"""Producer throughput into the emulator (2 shards): one PutRecords call at a time against
several in flight, for the synthetic market and a CSV replay, and on a stream already holding
a backlog.

The emulator is `stock-pipeline local-aws` in its own process, as `make dev` runs it. The
baseline (max_in_flight=1) is measured in the same run. The figures are ticks per second put,
end to end: generation or CSV parsing, JSON encoding and the HTTP calls.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from stock_pipeline import emulator
from stock_pipeline.producer.kinesis import KinesisProducer
from stock_pipeline.producer.sources import csv_ticks
from stock_pipeline.producer.synthetic import SyntheticMarket

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
BACKLOG = int(sys.argv[2]) if len(sys.argv) > 2 else 400_000
ROUND = 2_000  # ticks handed to put_ticks at once, as `produce` does at --rate 8000
SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "KO"]


def put_rate(client, stream: str, ticks, max_in_flight: int) -> float:
    producer = KinesisProducer(client, stream, max_in_flight=max_in_flight)
    started = time.monotonic()
    batch = []
    for tick in ticks:
        batch.append(tick)
        if len(batch) == ROUND:
            producer.put_ticks(batch)
            batch = []
    producer.put_ticks(batch)
    return producer.stats.sent / (time.monotonic() - started)


def new_stream(client, name: str) -> str:
    client.create_stream(StreamName=name, ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName=name)
    return name


def main() -> None:
    port = emulator.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "LOCAL_S3_DIR": f"{folder}/s3", "AWS_ENDPOINT_URL": endpoint}
        local_aws = subprocess.Popen(
            [sys.executable, "-m", "stock_pipeline.cli", "local-aws", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = emulator.client("kinesis", endpoint)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.list_streams()
                    break
                except Exception:
                    if time.monotonic() > deadline or local_aws.poll() is not None:
                        raise SystemExit("the emulator did not start") from None
                    time.sleep(0.5)
            csv = Path(folder) / "ticks.csv"
            market = SyntheticMarket(SYMBOLS, start=datetime(2024, 3, 5, 14, 30, tzinfo=UTC))
            pd.DataFrame(list(market.ticks(count=COUNT))).drop(
                columns=["event_id", "source", "schema_version"]
            ).to_csv(csv, index=False)
            print(f"{COUNT} ticks per measurement, {ROUND} per put_ticks call, 2 shards")
            for name, source in [
                ("synthetic", lambda: SyntheticMarket(SYMBOLS, seed=1).ticks(count=COUNT)),
                ("csv replay", lambda: iter(csv_ticks(str(csv)))),
            ]:
                rates = {}
                for in_flight in (1, 4, 8):
                    stream = new_stream(client, f"bench-{name.replace(' ', '-')}-{in_flight}")
                    rates[in_flight] = put_rate(client, stream, source(), in_flight)
                figures = ", ".join(f"{n} in flight {r:,.0f} ticks/s" for n, r in rates.items())
                print(f"{name:11} {figures}; 8 vs 1: {rates[8] / rates[1]:.2f}x", flush=True)

            # The same rate with a backlog on the stream: a put must not cost more per record
            # already there.
            stream = new_stream(client, "bench-backlog")
            market = SyntheticMarket(SYMBOLS, seed=2)
            first = put_rate(client, stream, market.ticks(count=COUNT), 8)
            put_rate(client, stream, market.ticks(count=BACKLOG), 8)
            last = put_rate(client, stream, market.ticks(count=COUNT), 8)
            print(
                f"backlog    8 in flight: {first:,.0f} ticks/s into an empty stream, "
                f"{last:,.0f} ticks/s after {BACKLOG + COUNT:,} ticks; {last / first:.2f}x"
            )
        finally:
            os.killpg(local_aws.pid, signal.SIGINT)
            local_aws.wait(timeout=60)


if __name__ == "__main__":
    main()
