"""CSV files as people save them, replayed by the real `stock-pipeline produce` into the lake."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from stock_pipeline.csv_files import UnreadableCsvError
from stock_pipeline.producer.sources import csv_ticks
from tests.helpers import query_lake

# Every time form at once, with a byte-order mark and CRLF line ends, as Excel saves it.
TICKS_CSV = (
    "\ufeffTS,Symbol,Price,Volume,Bid,Ask\r\n"
    "2024-03-05T15:00:00Z,AAPL,170.5,100,170.4,170.6\r\n"
    "2024-03-05T15:00:01.250+01:00,MSFT,400.25,5,,\r\n"
    "2024-03-05T10:00:02-05:00,AAPL,170.75,7,170.7,170.8\r\n"
    "2024-03-05T15:00:03.5,NVDA,880,1,,\r\n"
    "2024-03-05,KO,60.1,3,,\r\n"
    "2024-03-05T15:00:00+0000,KO,60.2,4,60.1,60.3\r\n"
)
EXPECTED = [  # (symbol, ts in UTC, price, volume, bid, ask)
    ("KO", datetime(2024, 3, 5, tzinfo=UTC), 60.1, 3, None, None),
    ("MSFT", datetime(2024, 3, 5, 14, 0, 1, 250_000, tzinfo=UTC), 400.25, 5, None, None),
    ("AAPL", datetime(2024, 3, 5, 15, tzinfo=UTC), 170.5, 100, 170.4, 170.6),
    ("KO", datetime(2024, 3, 5, 15, tzinfo=UTC), 60.2, 4, 60.1, 60.3),
    ("AAPL", datetime(2024, 3, 5, 15, 0, 2, tzinfo=UTC), 170.75, 7, 170.7, 170.8),
    ("NVDA", datetime(2024, 3, 5, 15, 0, 3, 500_000, tzinfo=UTC), 880.0, 1, None, None),
]


def test_every_time_form_bom_and_crlf_land_in_the_lake(ingest_ticks, tmp_path, run_command):
    path = tmp_path / "ticks.csv"
    path.write_bytes(TICKS_CSV.encode())

    # The command a user runs, against the emulator; then the real sensor and raw_ticks.
    run_command(
        *("-m", "stock_pipeline.cli", "produce", "--source", "csv"),
        *("--file", str(path), "--rate", "1000"),
        check=True,
        timeout=60,
    )
    ingest_ticks.drain()

    landed = query_lake("select symbol, ts, price, volume, bid, ask from ticks order by ts, symbol")
    assert landed == EXPECTED
    # Replaying the same file re-sends the same event ids: nothing doubles downstream.
    assert [t["event_id"] for t in csv_ticks(str(path))] == [
        t["event_id"] for t in csv_ticks(str(path))
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"ts,symbol,price,volume\n2024-03-05T15:00:00Z,AAPL,1,1\n2024-13-05T15:00:00Z,AAPL,1,1\n",
            "line 3, column ts: '2024-13-05T15:00:00Z' is not an ISO-8601 time or date",
        ),
        (
            b"ts,symbol,price,volume\r\n2024-03-05T15:00:00Z,AAPL,abc,1\r\n",
            "line 2, column price: 'abc' is not a number",
        ),
        (
            b"ts,symbol,price,volume\n2024-03-05T15:00:00Z,,1,1\n",
            "line 2, column symbol: the empty cell is not a value",
        ),
        (b"ts,symbol,volume\n2024-03-05,AAPL,1\n", "no column price"),
        (
            b"ts,symbol,price,volume\n2024-03-05,AAPL,1,1\n2024-03-05,\xe9,1,1\n",
            "line 3: not UTF-8",
        ),
        (b"", "empty file"),
        (
            b"ts,symbol,price,volume\n2024-03-05,AAPL,1,1,9,9\n",
            "line 2: more fields than the header's 4",
        ),
        (
            b"ts,symbol,price,volume\n2024-03-05,AAPL,1,1\n2024-03-05,AAPL,1,1,9\n",
            "line 3: 5 fields where the header has 4",
        ),
    ],
)
def test_an_unreadable_file_gives_one_line_naming_file_line_and_column(
    tmp_path, content, message, run_command
):
    path = tmp_path / "ticks.csv"
    path.write_bytes(content)
    with pytest.raises(UnreadableCsvError) as raised:
        csv_ticks(str(path))
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)

    # The command prints that one line and exits non-zero, without a traceback.
    result = run_command(
        *("-m", "stock_pipeline.cli", "produce", "--source", "csv", "--file", str(path)),
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"stock-pipeline produce: {raised.value}"]


def test_bar_file_replays_one_tick_per_bar_at_its_close(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(
        b"\xef\xbb\xbfDate,Symbol,Open,High,Low,Close,Volume\r\n"
        b"2024-03-05,AAPL,1,2,0.5,1.5,10\r\n2024-03-04T00:00:00Z,AAPL,1,2,0.5,1.25,20\r\n"
    )
    ticks = pd.DataFrame(csv_ticks(str(path)))
    assert ticks[["ts", "price", "volume"]].values.tolist() == [
        ["2024-03-04T00:00:00.000000+00:00", 1.25, 20],
        ["2024-03-05T00:00:00.000000+00:00", 1.5, 10],
    ]
