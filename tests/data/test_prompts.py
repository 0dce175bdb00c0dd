"""Prompt readers: the shipped GSM8K/BBH copy by default, other folders, the demo's problems, files."""

from __future__ import annotations

import json

import pytest

from sparseinfer_dse.data import DATA_DIR, data_dir
from sparseinfer_dse.data.prompts import format_question, load_prompts
from sparseinfer_dse.demo import heldout_path
from sparseinfer_dse.errors import UserError


def _one_line_error(match: str, *args) -> None:
    with pytest.raises(UserError, match=match) as err:
        load_prompts(*args)
    assert "\n" not in str(err.value)


def test_data_dir_defaults_to_the_shipped_copy(tmp_path):
    assert data_dir(None) == DATA_DIR and data_dir(str(tmp_path)) == tmp_path
    assert data_dir("~/x") == data_dir("~/x").expanduser() and "~" not in str(data_dir("~/x"))


def test_gsm8k_reads_the_shipped_copy_without_a_data_dir():
    first = [json.loads(x)["question"] for x in (DATA_DIR / "gsm8k" / "test.jsonl").read_text().splitlines()[:3]]
    got = load_prompts("gsm8k", 3)
    assert got == [format_question(q) for q in first]
    assert got[0].startswith("Question: ") and got[0].endswith("\nAnswer:")
    assert load_prompts("gsm8k", 3, DATA_DIR) == got
    assert len(load_prompts("gsm8k", 5000)) == 1319  # the whole test split, no more


def test_gsm8k_from_another_folder(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    rows = [{"question": f" What is {i} + {i}? ", "answer": f"#### {2 * i}"} for i in range(3)]
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    expected = ["Question: What is 0 + 0?\nAnswer:", "Question: What is 1 + 1?\nAnswer:"]
    assert load_prompts("gsm8k", 2, tmp_path) == expected
    assert len(load_prompts("gsm8k", 10, str(tmp_path))) == 3
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps(rows[0]) + "\n{\"answer\": 1}\n")
    _one_line_error("line 2 is not a GSM8K record", "gsm8k", 5, tmp_path)
    _one_line_error("gsm8k/test.jsonl", "gsm8k", 1, tmp_path / "nowhere")


def test_bbh_round_robin_over_the_shipped_tasks(tmp_path):
    files = sorted((DATA_DIR / "bbh").glob("*.json"))
    assert len(files) == 27
    firsts = [json.loads(f.read_text())["examples"][0]["input"] for f in files]
    got = load_prompts("bbh", 30)
    assert got[:27] == [f"Q: {q}\nA:" for q in firsts]  # one example of every task before any second one
    assert got[27] == f"Q: {json.loads(files[0].read_text())['examples'][1]['input']}\nA:"
    (tmp_path / "bbh").mkdir()
    a = {"examples": [{"input": "a1"}, {"input": "a2"}, {"input": "a3"}]}
    (tmp_path / "bbh" / "a.json").write_text(json.dumps(a))
    (tmp_path / "bbh" / "b.json").write_text(json.dumps({"examples": [{"input": "b1"}]}))
    assert load_prompts("bbh", 10, tmp_path) == ["Q: a1\nA:", "Q: b1\nA:", "Q: a2\nA:", "Q: a3\nA:"]
    assert load_prompts("bbh", 2, tmp_path) == ["Q: a1\nA:", "Q: b1\nA:"]
    (tmp_path / "bbh" / "b.json").write_text(json.dumps({"rows": []}))
    _one_line_error("not a BBH file", "bbh", 2, tmp_path)
    _one_line_error("no BBH files", "bbh", 2, tmp_path / "nowhere")


def test_demo_prompts_are_the_held_out_problems():
    first = json.loads(heldout_path().read_text().splitlines()[0])["question"]
    got = load_prompts("demo", 4)
    assert len(got) == 4 and got[0] == format_question(first)


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  \nsecond prompt\nthird\n")
    assert load_prompts(str(txt), 2) == ["first prompt", "second prompt"]
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "p"}\n\n{"question": "q", "prompt": "wins"}\n{"input": "i"}\n{"text": 3}\n')
    assert load_prompts(str(jl), 10) == ["p", "wins", "i", "3"]
    jl.write_text('{"other": 1}\n')
    _one_line_error("needs one of prompt, question, input, text", str(jl), 1)
    jl.write_text('{"prompt": "p"}\nnot json\n')
    _one_line_error("line 2 is not JSON", str(jl), 1)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    _one_line_error("holds no prompts", str(empty), 3)


def test_bad_arguments_are_one_line_errors(tmp_path):
    _one_line_error("--limit must be at least 1", "gsm8k", 0)
    _one_line_error("must be gsm8k, bbh, demo or an existing file", str(tmp_path / "missing.txt"), 1)
    _one_line_error("must be gsm8k, bbh, demo or an existing file", "gsm9k", 1)
