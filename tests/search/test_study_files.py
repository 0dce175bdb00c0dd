"""The committed study definitions parse, and use only real `search` option names."""

import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sparseinfer_dse.search_cmd import search_command

STUDIES = sorted((Path(__file__).parents[2] / "studies").glob("*.toml"))
OPTIONS = set(inspect.signature(search_command).parameters) - {"ctx"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_study_file_keys_are_search_options(path):
    table = tomllib.loads(path.read_text())["search"]
    assert set(table) <= OPTIONS, set(table) - OPTIONS
    assert table["budget"] >= 1 and table["model"]


def test_studies_exist():
    assert {p.name for p in STUDIES} >= {"demo.toml", "synthetic-7b.toml", "prosparse-llama2-7b.toml",
                                         "prosparse-llama2-13b.toml"}


def test_bad_study_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[search]\nmodel = "demo"\nbudgit = 3\n')
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", "search",
                           "--study", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown keys budgit" in proc.stderr and "Traceback" not in proc.stderr
