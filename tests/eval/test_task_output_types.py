"""What a task is scored by, read from the task configs before anything runs: a search refuses
log-likelihood tasks, whose one (dense) prefill pass no alpha profile can change."""

from __future__ import annotations

import json

import pytest

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.eval.harness import build_task_manager, require_generate_until, task_output_types

LL_TASK = """task: tiny_ll
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{question}}}}"
doc_to_target: " {{{{answer}}}}"
metric_list:
  - metric: acc
"""
LL_GROUP = """group: tiny_group
task:
  - demo_arith
  - tiny_ll
"""


@pytest.fixture
def ll_dir(tmp_path):
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(3)))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_ll.yaml").write_text(LL_TASK.format(data=data))
    (tasks / "tiny_group.yaml").write_text(LL_GROUP)
    return tasks


def test_demo_arith_is_generate_until():
    tm = build_task_manager(["demo_arith"])
    assert task_output_types(["demo_arith"], tm) == {"demo_arith": "generate_until"}
    assert require_generate_until(["demo_arith"], tm) == {"demo_arith": "generate_until"}


def test_a_group_gives_its_leaves(data_dir):
    tm = build_task_manager(["bbh"], data_dir)
    types = task_output_types(["bbh"], tm)
    assert len(types) == 27 and set(types.values()) == {"generate_until"}
    assert "bbh_cot_fewshot_navigate" in types


def test_loglikelihood_task_is_refused_in_one_line(ll_dir):
    tm = build_task_manager(["demo_arith", "tiny_ll", "tiny_group"], include_path=[ll_dir])
    assert task_output_types(["tiny_ll"], tm) == {"tiny_ll": "loglikelihood"}
    assert task_output_types(["tiny_group"], tm) == {"demo_arith": "generate_until", "tiny_ll": "loglikelihood"}
    for names in (["demo_arith", "tiny_ll"], ["tiny_group"]):
        with pytest.raises(UserError) as info:
            require_generate_until(names, tm)
        msg = str(info.value)
        assert msg.startswith("task tiny_ll is scored by log-likelihood (output_type loglikelihood)")
        assert "no alpha profile can change its score" in msg and "\n" not in msg


def test_unknown_name(ll_dir):
    tm = build_task_manager(["tiny_ll"], include_path=[ll_dir])
    with pytest.raises(UserError, match="unknown lm-eval task 'nope'"):
        task_output_types(["nope"], tm)
