"""Loading instruction data: the demo generator, Hugging Face Hub datasets, local files;
mapping columns to (instruction, input, output), validating them, splitting train/test.

Every problem with the user's data is raised as a UserError naming the file, line (or
row) and column, and what to change. (One module: each source ends in the same records and
the same validation.)
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ift import demo
from ift.config import DataConfig, FieldsConfig
from ift.errors import UserError, one_line

log = logging.getLogger(__name__)

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class SourceRow:
    """One row of the source data and where it came from (for error messages)."""

    where: str  # e.g. "data.csv line 12" or "tatsu-lab/alpaca row 7"
    values: dict[str, Any]


# --- local files -------------------------------------------------------------------------
# JSONL and CSV are read with the standard library rather than `datasets`: we need the
# line number of a bad row for the error message, and CSV cells must stay text (pandas
# and pyarrow would turn "NA" into null and "007" into 7).


def _open_text(path: Path):
    # utf-8-sig drops a byte-order mark; newline="" lets csv handle CRLF inside quotes.
    return open(path, encoding="utf-8-sig", newline="")


def _decode_error(path: Path, exc: UnicodeDecodeError) -> UserError:
    raw = path.read_bytes()
    line = raw[: exc.start].count(b"\n") + 1
    return UserError(f"{path} line {line}: not UTF-8 text (byte {exc.start}); "
                     "save the file as UTF-8 (or check that it is a text file)")


def _read_jsonl(path: Path) -> list[SourceRow]:
    rows = []
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue  # blank lines are harmless
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path} line {number}: malformed JSON ({exc.msg} at column "
                                    f"{exc.colno}); each line must be one JSON object") from exc
                if not isinstance(value, dict):
                    raise UserError(f"{path} line {number}: expected a JSON object "
                                    f"{{\"column\": value, ...}}, got {type(value).__name__}")
                rows.append(SourceRow(f"{path} line {number}", value))
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from exc
    return rows


def _read_json(path: Path) -> list[SourceRow]:
    try:
        with _open_text(path) as handle:
            value = json.load(handle)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno}: malformed JSON ({exc.msg} at column "
                        f"{exc.colno})") from exc
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()) and value:
        # Column-oriented {"col": [...], ...}
        columns = list(value)
        lengths = {len(v) for v in value.values()}
        if len(lengths) != 1:
            raise UserError(f"{path}: the column lists have different lengths")
        value = [dict(zip(columns, cells)) for cells in zip(*value.values())]
    if not isinstance(value, list):
        raise UserError(f"{path}: expected a JSON list of objects (or JSON Lines in a .jsonl file)")
    rows = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise UserError(f"{path} item {index}: expected a JSON object, got {type(item).__name__}")
        rows.append(SourceRow(f"{path} item {index}", item))
    return rows


def _read_csv(path: Path) -> list[SourceRow]:
    rows = []
    try:
        with _open_text(path) as handle:
            reader = csv.DictReader(handle, strict=True)
            start = 2  # line 1 is the header
            try:
                for values in reader:
                    if None in values:
                        raise UserError(f"{path} line {start}: more cells than header columns "
                                        f"({len(reader.fieldnames or [])}); quote cells that contain commas")
                    if any(v and v.strip() for v in values.values()):  # skip blank lines
                        rows.append(SourceRow(f"{path} line {start}", values))
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise UserError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from exc
    return rows


def _read_with_datasets(path: Path) -> list[SourceRow]:
    """Parquet files and `save_to_disk` directories, through the datasets library."""
    import datasets

    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if "train" not in loaded:
                    raise UserError(f"{path}: a saved DatasetDict without a 'train' split "
                                    f"(splits: {', '.join(loaded)})")
                loaded = loaded["train"]
        else:
            loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: cannot read it as a dataset ({type(exc).__name__}: "
                        f"{one_line(str(exc))[:200]})") from exc
    return [SourceRow(f"{path} row {i}", row) for i, row in enumerate(loaded)]


def read_local(path: str | Path) -> list[SourceRow]:
    """Rows of a .jsonl/.json/.csv/.parquet file or a `save_to_disk` directory."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data.path: {path} does not exist; set data.path to a "
                        f"{'/'.join(LOCAL_SUFFIXES)} file or a save_to_disk directory")
    if path.is_dir():
        rows = _read_with_datasets(path)
    else:
        suffix = path.suffix.lower()
        readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
                   ".parquet": _read_with_datasets}
        if suffix not in readers:
            raise UserError(f"data.path: {path} has an unsupported type '{suffix}'; use one of "
                            f"{', '.join(LOCAL_SUFFIXES)} or a save_to_disk directory")
        if path.stat().st_size == 0:
            raise UserError(f"data.path: {path} is empty; it needs a header/rows with "
                            "instruction and answer columns")
        rows = readers[suffix](path)
    if not rows:
        raise UserError(f"data.path: {path} has no data rows")
    return rows


# --- the Hugging Face Hub ------------------------------------------------------------------


def read_hub(name: str, split: str, revision: str | None, limit: int | None) -> list[SourceRow]:
    """Rows of a Hub dataset split; with `limit`, stream only the first `limit` rows."""
    import datasets

    from ift.hub import hub_errors

    with hub_errors("dataset", name):
        loaded = datasets.load_dataset(name, split=split, revision=revision, streaming=limit is not None)
        rows = list(islice(loaded, limit)) if limit is not None else loaded.to_list()
    return [SourceRow(f"{name} [{split}] row {i}", row) for i, row in enumerate(rows)]


# --- mapping and validation ----------------------------------------------------------------


def _text(row: SourceRow, column: str, key: str, required: bool) -> str:
    value = row.values.get(column)
    if value is None:
        if required and column not in row.values:
            raise UserError(f"{row.where}: no column '{column}' (data.fields.{key}); "
                            f"columns found: {', '.join(map(str, row.values)) or 'none'}; "
                            f"set data.fields.{key}=<column>")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{row.where}: column '{column}' (data.fields.{key}) holds "
                        f"{type(value).__name__} {one_line(repr(value))[:60]}, expected text")
    # Normalise line endings inside cells (CRLF files) and surrounding whitespace.
    return str(value).replace("\r\n", "\n").replace("\r", "\n").strip()


def to_records(rows: Iterable[SourceRow], fields: FieldsConfig) -> list[dict[str, str]]:
    """Map source columns to {instruction, input, output}; refuse non-text values."""
    rows = list(rows)
    if rows:  # a column found in no row is reported once, with the columns that do exist
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row.values))
        source = rows[0].where.rsplit(" ", 2)[0]
        for key, column in (("instruction", fields.instruction), ("output", fields.output),
                            ("input", fields.input)):
            if column is not None and column not in columns:
                raise UserError(
                    f"{source}: no column '{column}' for data.fields.{key}; "
                    f"columns found: {', '.join(map(str, columns))}; set data.fields.{key}=<column>"
                    + (" (or data.fields.input=null if there is no input column)" if key == "input" else ""))
    return [
        {
            "instruction": _text(row, fields.instruction, "instruction", required=True),
            "input": _text(row, fields.input, "input", required=False) if fields.input else "",
            "output": _text(row, fields.output, "output", required=True),
        }
        for row in rows
    ]


def split_records(records: list[dict], test_size: float, seed: int) -> dict[str, list[dict]]:
    """A seeded train/test split (datasets' train_test_split over row indices).

    `test_size` below 1 is a fraction of the rows, from 1 up a number of rows.
    """
    from datasets import Dataset

    if len(records) < 2:
        raise UserError(f"only {len(records)} usable row(s): need at least 2 to split train/test")
    if test_size >= 1 and test_size > len(records) - 1:
        raise UserError(f"data.test_size={test_size:g} rows, but there are only {len(records)}: leave at least one "
                        f"for training, e.g. `dvc exp run -S data.test_size=0.1`")
    indices = Dataset.from_dict({"i": list(range(len(records)))})
    split = indices.train_test_split(test_size=int(test_size) if test_size >= 1 else test_size, seed=seed)
    return {name: [records[i] for i in split[name]["i"]] for name in ("train", "test")}


def load_splits(cfg: DataConfig, seed: int) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Materialise train/test records for the configured source; return (splits, metadata).

    `seed` is the data seed (ift.config.data_seed): it draws the demo examples and the split.
    """
    meta: dict[str, Any] = {"source": cfg.source}
    if cfg.source == "demo":
        assert cfg.demo is not None  # checked by ift.config
        records = demo.generate(cfg.demo.num_examples, seed)[: cfg.limit]
        splits = split_records(records, cfg.test_size, seed)
        meta.update(name="demo", generator="ift.demo", num_examples=len(records))
    elif cfg.source == "local":
        rows = read_local(cfg.path)[: cfg.limit]
        splits = split_records(to_records(rows, cfg.fields), cfg.test_size, seed)
        meta.update(path=str(cfg.path), rows=len(rows))
    else:  # hub
        from ift.hub import resolve_revision

        sha = resolve_revision(cfg.name, "dataset", cfg.revision)
        train_rows = read_hub(cfg.name, cfg.train_split, sha, cfg.limit)
        if cfg.test_split:
            splits = {"train": to_records(train_rows, cfg.fields),
                      "test": to_records(read_hub(cfg.name, cfg.test_split, sha, cfg.limit), cfg.fields)}
        else:
            splits = split_records(to_records(train_rows, cfg.fields), cfg.test_size, seed)
        meta.update(name=cfg.name, revision=cfg.revision, resolved_revision=sha)
    meta["counts"] = {name: len(rows) for name, rows in splits.items()}
    return splits, meta


# --- hydrate: cleaning and statistics ------------------------------------------------------


def drop_unusable(records: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Drop records with an empty answer or instruction; return (kept, {reason: count})."""
    kept, dropped = [], {"empty_output": 0, "empty_instruction": 0}
    for record in records:
        if not record["output"].strip():
            dropped["empty_output"] += 1
        elif not record["instruction"].strip():
            dropped["empty_instruction"] += 1
        else:
            kept.append(record)
    return kept, dropped


def require_usable(records: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    """The usable records; a UserError if there are none (checked in fetch, before any stage succeeds)."""
    kept, dropped = drop_unusable(records)
    if not kept:
        raise UserError(f"{where}: none of {len(records)} rows is usable (dropped: {dropped}); "
                        "check data.fields.output and data.fields.instruction")
    return kept


def _percentiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"min": ordered[0], "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1]}


def token_length_stats(rows: list[dict[str, str]], tokenizer) -> dict[str, dict[str, int]]:
    """Percentiles of prompt, answer and total token counts (answer counts include EOS)."""
    prompts = [len(ids) for ids in tokenizer([r["input"] for r in rows], add_special_tokens=False)["input_ids"]]
    answers = [len(ids) + 1 for ids in tokenizer([r["output"] for r in rows], add_special_tokens=False)["input_ids"]]
    return {"prompt": _percentiles(prompts), "answer": _percentiles(answers),
            "total": _percentiles([p + a for p, a in zip(prompts, answers)])}
