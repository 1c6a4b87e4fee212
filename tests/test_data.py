"""Loading local data: formats, column mapping, awkward-but-valid input, clear errors."""

import json

import pytest

from ift.config import DataConfig, DemoConfig, FieldsConfig
from ift.data import drop_unusable, load_splits, read_local, split_records, to_records
from ift.errors import UserError
from ift.prompts import hydrate

COMPANY_FIELDS = FieldsConfig(instruction="Customer Question", input=None, output="Agent Answer")


def write_bytes(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_awkward_but_valid_csv(tmp_path):
    # BOM, CRLF, a blank line, spaces and capitals in column names, unicode, braces and
    # template-like text inside the cells, a quoted cell with a comma and a newline.
    text = ('Customer Question,Agent Answer\r\n'
            '"How do I use {instruction} in a template?","Write {instruction} literally, braces and all."\r\n'
            '\r\n'
            '"Où est ### Response: ici?","Ça marche, même avec ""quotes"", virgules\r\net lignes."\r\n'
            '日本語の質問,日本語の答え\r\n')
    path = write_bytes(tmp_path, "company.csv", b"\xef\xbb\xbf" + text.encode("utf-8"))
    records = to_records(read_local(path), COMPANY_FIELDS)
    assert [r["instruction"] for r in records] == [
        "How do I use {instruction} in a template?", "Où est ### Response: ici?", "日本語の質問"]
    assert records[1]["output"] == 'Ça marche, même avec "quotes", virgules\net lignes.'
    assert all(r["input"] == "" for r in records)
    prompt = hydrate(records[0])["input"]
    assert "### Instruction:\nHow do I use {instruction} in a template?\n\n### Response:" in prompt


def test_jsonl_with_bom_crlf_and_blank_lines(tmp_path):
    lines = [json.dumps({"instruction": "Say {x}", "input": "", "output": "{x}"}),
             "", json.dumps({"instruction": "Two", "input": "in", "output": "out"})]
    path = write_bytes(tmp_path, "d.jsonl", b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    records = to_records(read_local(path), FieldsConfig())
    assert records == [{"instruction": "Say {x}", "input": "", "output": "{x}"},
                       {"instruction": "Two", "input": "in", "output": "out"}]


def test_json_list_and_columns(tmp_path):
    rows = [{"q": "a", "a": "b"}, {"q": "c", "a": "d"}]
    fields = FieldsConfig(instruction="q", input=None, output="a")
    listed = write_bytes(tmp_path, "l.json", json.dumps(rows).encode())
    columns = write_bytes(tmp_path, "c.json", json.dumps({"q": ["a", "c"], "a": ["b", "d"]}).encode())
    assert to_records(read_local(listed), fields) == to_records(read_local(columns), fields)


def test_parquet_and_save_to_disk(tmp_path):
    from datasets import Dataset

    data = Dataset.from_dict({"question": ["q1", "q2"], "answer": ["a1", "a2"]})
    data.to_parquet(str(tmp_path / "d.parquet"))
    data.save_to_disk(str(tmp_path / "saved"))
    fields = FieldsConfig(instruction="question", input=None, output="answer")
    expected = [{"instruction": "q1", "input": "", "output": "a1"}, {"instruction": "q2", "input": "", "output": "a2"}]
    assert to_records(read_local(tmp_path / "d.parquet"), fields) == expected
    assert to_records(read_local(tmp_path / "saved"), fields) == expected


def test_numbers_become_text(tmp_path):
    path = write_bytes(tmp_path, "n.jsonl", b'{"instruction": "2+2?", "output": 4}\n')
    assert to_records(read_local(path), FieldsConfig(input=None))[0]["output"] == "4"


@pytest.mark.parametrize("content, match", [
    (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', r"line 2: malformed JSON"),
    (b'{"instruction": "a", "output": "b"}\n[1, 2]\n', r"line 2: expected a JSON object"),
    (b"", r"is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", r"not UTF-8"),
])
def test_bad_jsonl_is_refused_with_line(tmp_path, content, match):
    with pytest.raises(UserError, match=match):
        read_local(write_bytes(tmp_path, "bad.jsonl", content))


def test_missing_column_lists_columns_and_key(tmp_path):
    path = write_bytes(tmp_path, "d.csv", b"Question,Answer\nq,a\n")
    with pytest.raises(UserError, match=r"no column 'instruction'.*columns found: Question, Answer.*"
                                        r"data.fields.instruction="):
        to_records(read_local(path), FieldsConfig())


def test_non_text_value_names_line_and_column(tmp_path):
    path = write_bytes(tmp_path, "d.jsonl",
                       b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": ["x", "y"]}\n')
    with pytest.raises(UserError, match=r"line 2: column 'output' \(data.fields.output\) holds list"):
        to_records(read_local(path), FieldsConfig(input=None))


def test_missing_path_and_unsupported_type(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_local(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="unsupported type '.txt'"):
        read_local(write_bytes(tmp_path, "d.txt", b"hello"))


def test_csv_with_extra_cells_names_line(tmp_path):
    path = write_bytes(tmp_path, "d.csv", b"instruction,output\na,b\nc,d,e\n")
    with pytest.raises(UserError, match="line 3: more cells than header"):
        read_local(path)


def test_drop_unusable_counts_reasons():
    kept, dropped = drop_unusable([
        {"instruction": "a", "input": "", "output": "b"},
        {"instruction": "a", "input": "", "output": "  "},
        {"instruction": "", "input": "", "output": "b"},
    ])
    assert len(kept) == 1 and dropped == {"empty_output": 1, "empty_instruction": 1}


def test_split_is_seeded_and_disjoint():
    records = [{"instruction": str(i), "input": "", "output": "x"} for i in range(100)]
    first = split_records(records, 0.2, seed=3)
    assert first == split_records(records, 0.2, seed=3)
    assert len(first["test"]) == 20 and len(first["train"]) == 80
    assert not {r["instruction"] for r in first["test"]} & {r["instruction"] for r in first["train"]}


def test_demo_splits_hold_unseen_inputs():
    splits, meta = load_splits(DataConfig(source="demo", demo=DemoConfig(num_examples=500), test_size=0.1), seed=1)
    assert meta["counts"] == {"train": 450, "test": 50}
    keys = lambda rows: {(r["instruction"], r["input"]) for r in rows}  # noqa: E731
    assert not keys(splits["train"]) & keys(splits["test"])


@pytest.mark.parametrize("limit, test_split", [(3, "test"), (None, None)])
def test_hub_source_pins_the_revision_streams_a_limit_and_reads_splits(tmp_path, monkeypatch, limit, test_split):
    """A local dataset folder stands in for the Hub repo (no download, ever)."""
    import datasets

    import ift.hub

    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(10)]
    for split, part in (("train", rows[:8]), ("test", rows[8:])):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    calls, load_dataset = [], datasets.load_dataset

    def local_load_dataset(name, split, revision, streaming):
        calls.append((split, revision, streaming))
        return load_dataset(str(tmp_path), split=split, streaming=streaming)  # a folder: no revision

    monkeypatch.setattr(ift.hub, "resolve_revision", lambda repo_id, kind, revision: "c0ffee")
    monkeypatch.setattr(datasets, "load_dataset", local_load_dataset)
    cfg = DataConfig(source="hub", name="someone/qa", revision="main", test_split=test_split, limit=limit,
                     test_size=0.1, demo=None)
    splits, meta = load_splits(cfg, seed=0)
    assert meta["resolved_revision"] == "c0ffee"
    assert all(revision == "c0ffee" and streaming == (limit is not None) for _, revision, streaming in calls)
    if test_split:  # the first `limit` rows of each split, as they are
        assert splits["train"] == rows[:3] and splits["test"] == rows[8:]
    else:  # the whole train split, split with test_size
        assert sorted(splits["train"] + splits["test"], key=lambda r: int(r["instruction"][1:])) == rows[:8]
        assert [split for split, _, _ in calls] == ["train"]


@pytest.mark.slow
def test_the_tiny_models_corpus_and_tokenizer_follow_the_data_seed(tmp_path):
    from ift import demo
    from ift.config import ModelConfig, Params, TinyModelConfig, data_seed
    from ift.modeling import fetch_base_model

    cfg = ModelConfig(tiny=TinyModelConfig(vocab_size=300, pretrain_steps=2, pretrain_batch_size=4))
    records = demo.generate(40, 0)

    def vocab(seed, corpus_seed):
        _, tokenizer, _ = fetch_base_model(cfg, records, seed, tmp_path / f"w{seed}-{corpus_seed}", corpus_seed)
        return tokenizer.get_vocab()

    assert vocab(1, 7) == vocab(2, 7)  # another training seed: the same tokenizer
    assert vocab(1, 7) != vocab(1, 8)
    params = Params()
    assert data_seed(params) == params.seed
    params.data.seed = 5
    assert data_seed(params) == 5
