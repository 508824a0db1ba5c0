"""CSV files as people save them, for the producer's replay and the `daily_bars` CSV source.

UTF-8 with or without a byte-order mark, LF or CRLF line ends, ISO-8601 times with or without
fractional seconds, `Z` or an offset, mixed in one file, and plain dates. A file that cannot be
read raises `UnreadableCsvError` with one line naming the file, the line and the column.
"""

import re
from pathlib import Path

import pandas as pd

# An ISO-8601 time that says where it is: a time of day, then Z or a UTC offset.
_HAS_OFFSET = r"\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"


class UnreadableCsvError(ValueError):
    """A CSV file that cannot be read, and where: one line, no traceback needed."""


def _line(row: int) -> str:
    # Rows count from 0 below the header, which is line 1.
    return f"line {row + 2}"


def read_csv(path: str | Path) -> pd.DataFrame:
    """Every cell as text (None where empty), with lower-case, snake_case column names."""
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except FileNotFoundError:
        raise UnreadableCsvError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableCsvError(f"{path}: is a folder, not a CSV file") from None
    except pd.errors.EmptyDataError:
        raise UnreadableCsvError(f"{path}: empty file, expected a header line") from None
    except UnicodeDecodeError as err:
        line = Path(path).read_bytes()[: err.start].count(b"\n") + 1
        raise UnreadableCsvError(f"{path}: line {line}: not UTF-8 text") from None
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        reason = (
            f"line {found[2]}: {found[3]} fields where the header has {found[1]}"
            if found
            else str(err).strip()
        )
        raise UnreadableCsvError(f"{path}: {reason}") from None
    if not isinstance(frame.index, pd.RangeIndex):
        # Every row longer than the header: pandas would take the extra fields as an index.
        raise UnreadableCsvError(
            f"{path}: line 2: more fields than the header's {len(frame.columns)}"
        )
    frame.columns = [re.sub(r"\s+", "_", str(c).strip().lower()) for c in frame.columns]
    return frame.apply(lambda column: column.str.strip()).astype(object).where(frame.notna(), None)


def _refuse(path, frame: pd.DataFrame, column: str, bad: pd.Series, expected: str) -> None:
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        value = frame[column].iloc[row]
        shown = "the empty cell" if value is None else repr(value)
        raise UnreadableCsvError(
            f"{path}: {_line(row)}, column {column}: {shown} is not {expected}"
        )


def require_columns(path, frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UnreadableCsvError(
            f"{path}: no column {', '.join(missing)} (columns found: {', '.join(frame.columns)})"
        )


def require_values(path, frame: pd.DataFrame, column: str) -> None:
    _refuse(path, frame, column, frame[column].isna(), "a value")


def times(path, frame: pd.DataFrame, column: str) -> pd.Series:
    """The column as UTC instants; a time without an offset, or a plain date, is taken as UTC."""
    text = frame[column]
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    _refuse(path, frame, column, parsed.isna(), "an ISO-8601 time or date")
    return parsed


def dates(path, frame: pd.DataFrame, column: str, timezone: str) -> pd.Series:
    """The column as calendar dates: a plain date as written, a time with an offset as its date
    in `timezone`."""
    text = frame[column].fillna("")
    aware = text.str.contains(_HAS_OFFSET, regex=True)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if aware.any():
        instants = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
        parsed[aware] = instants.dt.tz_convert(timezone).dt.tz_localize(None)
    if (~aware).any():
        parsed[~aware] = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
    _refuse(path, frame, column, parsed.isna(), "an ISO-8601 date")
    return parsed.dt.date


def numbers(path, frame: pd.DataFrame, column: str, required: bool = True) -> pd.Series:
    """The column as floats; an empty cell is refused when `required`, NaN otherwise."""
    text = frame[column]
    parsed = pd.to_numeric(text, errors="coerce").astype(float)
    unreadable = parsed.isna() if required else parsed.isna() & text.notna()
    _refuse(path, frame, column, unreadable, "a number")
    return parsed
