"""Reading benchmark files (CSV, JSON Lines, JSON; optionally gzipped) with errors that name the file and the row."""
import csv
import glob
import gzip
import io
import json
import os

from mindformers.tools.errors import ConfigError, DataError


def layout_error(task, data_path, layout):
    """The one-line error for a --eval_data_path that does not hold the task's files."""
    return ConfigError(f"eval_data_path: {data_path}: no {task} files found (expected {layout})")


def files_in(folder, pattern):
    """Sorted paths of `folder` matching a glob pattern (empty when the folder does not exist)."""
    return sorted(path for path in glob.glob(os.path.join(glob.escape(folder), pattern)) if os.path.isfile(path))


def _open_text(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _read_text(path):
    try:
        with _open_text(path) as stream:
            return stream.read()
    except (UnicodeDecodeError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({type(error).__name__})") from None


def read_csv_rows(path, columns):
    """A headerless CSV (MMLU): each row as a list of exactly len(columns) fields."""
    rows = []
    for line_number, row in _csv_rows(path):
        if len(row) != len(columns):
            raise DataError(f"{path}: line {line_number}: expected {len(columns)} columns ({','.join(columns)}), "
                            f"got {len(row)}")
        rows.append(row)
    return rows


def read_csv_records(path, required):
    """A CSV with a header row (C-Eval): each row as a dict; the header must hold every `required` column."""
    rows = list(_csv_rows(path))
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row naming {','.join(required)})")
    header = [name.strip() for name in rows[0][1]]
    missing = [name for name in required if name not in header]
    if missing:
        raise DataError(f"{path}: header: missing column(s) {','.join(missing)} (expected {','.join(required)})")
    records = []
    for line_number, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line_number}: expected {len(header)} columns ({','.join(header)}), "
                            f"got {len(row)}")
        records.append(dict(zip(header, row)))
    return records


def _csv_rows(path):
    """(line number, fields) of the non-blank rows; quoted fields may span lines."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if any(field.strip() for field in row):
                yield reader.line_num, row
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({error})") from None


def read_jsonl(path, required):
    """JSON Lines: (line number, object) for each non-blank line; every object must hold the `required` keys."""
    records = []
    for line_number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number}: not valid JSON ({error.msg})") from None
        check_keys(record, required, f"{path}: line {line_number}")
        records.append((line_number, record))
    return records


def read_json(path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def check_keys(record, required, where):
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with {', '.join(required)}, got {type(record).__name__}")
    missing = [key for key in required if key not in record]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)} (expected {', '.join(required)})")
