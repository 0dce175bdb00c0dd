"""Offline GSM8K/BBH tasks: the generated YAMLs give the JSON files' documents and lm-eval's metrics."""

from __future__ import annotations

import json
import shutil

import pytest

from sparseinfer_dse.data import DATA_DIR
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.harness import build_task_manager
from sparseinfer_dse.eval.offline_tasks import builtin_offline_tasks, leaf_tasks, offline_task_dir


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tm(data_dir):
    return build_task_manager(["gsm8k", "gsm8k_cot", "bbh", "bbh_zeroshot"], data_dir)


def test_known_names():
    known = builtin_offline_tasks()
    for name in ("gsm8k", "gsm8k_cot", "bbh", "bbh_zeroshot", "bbh_cot_fewshot", "bbh_cot_fewshot_boolean_expressions"):
        assert name in known, name
    assert len(leaf_tasks("bbh")) == 27
    assert all(t.startswith("bbh_cot_fewshot_") for t in leaf_tasks("bbh"))
    assert len(leaf_tasks("bbh_zeroshot")) == 27


def test_generated_yaml_only_overrides_the_data(data_dir):
    import yaml

    d = offline_task_dir(data_dir)
    cfg = yaml.safe_load((d / "gsm8k" / "gsm8k.yaml").read_text())
    assert cfg["include"].endswith("lm_eval/tasks/gsm8k/gsm8k.yaml")
    assert set(cfg) == {"include", "task", "dataset_path", "dataset_name", "dataset_kwargs"}
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str((data_dir / "gsm8k" / "test.jsonl").resolve())
    bbh = yaml.safe_load((d / "bbh" / "bbh_cot_fewshot_boolean_expressions.yaml").read_text())
    assert bbh["dataset_kwargs"]["field"] == "examples"


def test_gsm8k_documents_match_the_files(tm, data_dir):
    test = _jsonl(data_dir / "gsm8k" / "test.jsonl")
    train = _jsonl(data_dir / "gsm8k" / "train.jsonl")
    loaded = tm.load(["gsm8k", "gsm8k_cot"])
    for name in ("gsm8k", "gsm8k_cot"):
        task = loaded["tasks"][name]
        docs = list(task.test_docs())
        assert len(docs) == len(test) == 1319
        assert docs[0]["question"] == test[0]["question"] and docs[-1]["question"] == test[-1]["question"]
        assert docs[-1]["answer"] == test[-1]["answer"]
    gsm = loaded["tasks"]["gsm8k"]
    fs = list(gsm.fewshot_docs())  # 5-shot examples come from the train file
    assert len(fs) == len(train) and fs[0]["question"] == train[0]["question"]
    # prompts, filters and metric are lm-eval's
    assert gsm.config.doc_to_text == "Question: {{question}}\nAnswer:"
    assert gsm.config.num_fewshot == 5 and loaded["tasks"]["gsm8k_cot"].config.num_fewshot == 8
    assert [f["name"] for f in gsm.config.filter_list] == ["strict-match", "flexible-extract"]


def test_bbh_documents_match_the_files(tm, data_dir):
    loaded = tm.load(["bbh"])
    assert len(loaded["tasks"]) == 27
    for sub in ("boolean_expressions", "word_sorting"):
        ex = json.loads((data_dir / "bbh" / f"{sub}.json").read_text())["examples"]
        docs = list(loaded["tasks"][f"bbh_cot_fewshot_{sub}"].test_docs())
        assert len(docs) == len(ex)
        assert docs[0]["input"] == ex[0]["input"] and docs[-1]["input"] == ex[-1]["input"]
        assert docs[-1]["target"] == ex[-1]["target"]
    zs = tm.load(["bbh_zeroshot_navigate"])["tasks"]["bbh_zeroshot_navigate"]
    ex = json.loads((data_dir / "bbh" / "navigate.json").read_text())["examples"]
    assert len(list(zs.test_docs())) == len(ex)


class OracleLM:
    """An lm-eval LM that answers each document with its reference (or a wrong) answer."""

    def __new__(cls, answer):
        from lm_eval.api.model import LM

        class _Oracle(LM):
            def loglikelihood(self, requests):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests):
                raise NotImplementedError

            def generate_until(self, requests):
                return [answer(r.doc) for r in requests]

        return _Oracle()


def _score(tm, task, answer, limit=6):
    import lm_eval

    res = lm_eval.simple_evaluate(model=OracleLM(answer), tasks=[task], task_manager=tm, limit=limit,
                                  log_samples=False)
    return res["results"][task]


def test_lm_evals_own_metrics_on_offline_tasks(tm):
    r = _score(tm, "gsm8k", lambda d: " " + d["answer"])  # reference answers end with "#### N"
    assert r["exact_match,strict-match"] == 1.0 and r["exact_match,flexible-extract"] == 1.0
    r = _score(tm, "gsm8k", lambda d: " The answer is 7.")
    assert r["exact_match,strict-match"] == 0.0
    r = _score(tm, "gsm8k_cot", lambda d: f" 2 + 2 = 4. The answer is {d['answer'].split('####')[-1].strip()}.")
    assert r["exact_match,strict-match"] == 1.0
    r = _score(tm, "bbh_cot_fewshot_boolean_expressions", lambda d: f"Let's see. So the answer is {d['target']}.")
    assert r["exact_match,get-answer"] == 1.0


def test_missing_data_files_are_one_line_errors(tmp_path, data_dir):
    (tmp_path / "gsm8k").mkdir()
    shutil.copy(data_dir / "gsm8k" / "test.jsonl", tmp_path / "gsm8k" / "test.jsonl")
    with pytest.raises(UserError, match=r"gsm8k/train.jsonl"):
        build_task_manager(["gsm8k"], tmp_path)
    with pytest.raises(UserError, match=r"bbh/boolean_expressions.json"):
        build_task_manager(["bbh"], tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        build_task_manager(["gsm8k"], tmp_path / "nope")


def test_without_data_dir_the_shipped_copy_is_read_offline(monkeypatch):
    # an absent --data-dir means the data shipped in sparseinfer_dse/data (no hub, no error)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tm = build_task_manager(["gsm8k"], None)
    docs = list(tm.load(["gsm8k"])["tasks"]["gsm8k"].test_docs())
    shipped = _jsonl(DATA_DIR / "gsm8k" / "test.jsonl")
    assert len(docs) == len(shipped) and docs[-1]["question"] == shipped[-1]["question"]
    assert offline_task_dir(None) == offline_task_dir(DATA_DIR)


def test_unknown_task_is_a_one_line_error(data_dir):
    with pytest.raises(UserError) as err:
        build_task_manager(["gsm8kk"], data_dir)
    assert "unknown lm-eval task 'gsm8kk'" in str(err.value) and "\n" not in str(err.value)
