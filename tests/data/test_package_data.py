"""A regular (non-editable) install carries every package and every shipped file: pyproject.toml
lists packages and package data by hand, so a new subpackage or data file must be added there."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder(package: str) -> Path:
    top, _, rest = package.partition(".")
    base = ROOT / CONFIG.get("package-dir", {}).get(top, top)
    return base.joinpath(*rest.split(".")) if rest else base


def _shipped_files(folder: Path) -> set[Path]:
    """Files under a package folder that are not code and not inside a subpackage."""
    out = set()
    for f in folder.rglob("*"):
        if not f.is_file() or f.suffix in (".py", ".pyc") or "__pycache__" in f.parts:
            continue
        inner = [p for p in f.relative_to(folder).parents if p != Path(".")]
        if any((folder / p / "__init__.py").is_file() for p in inner):
            continue
        out.add(f)
    return out


def test_every_package_is_listed():
    listed = set(CONFIG["packages"])
    found = set()
    for top in ("sparseinfer_dse", "sparseinfer_kernels"):
        base = _folder(top)
        for init in base.rglob("__init__.py"):
            found.add(".".join([top, *init.parent.relative_to(base).parts]))
    assert found - listed == set(), "packages missing from pyproject.toml [tool.setuptools] packages"
    assert all(_folder(p).is_dir() for p in listed)
    assert CONFIG["package-dir"] == {"sparseinfer_kernels": "kernels"}  # never importable as `kernels`


def test_package_data_covers_every_shipped_file():
    data = CONFIG["package-data"]
    for package in ("sparseinfer_dse.data", "sparseinfer_dse.demo"):
        folder = _folder(package)
        covered = {f for pattern in data[package] for f in folder.glob(pattern) if f.is_file()}
        missing = sorted(str(f.relative_to(ROOT)) for f in _shipped_files(folder) - covered)
        assert not missing, f"not in package-data of {package}: {missing}"
    data_folder = _folder("sparseinfer_dse.data")
    shipped = {f.relative_to(data_folder).as_posix() for f in _shipped_files(data_folder)}
    assert {"gsm8k/train.jsonl", "gsm8k/test.jsonl", "gsm8k/LICENSE", "bbh/LICENSE", "bbh/navigate.json"} <= shipped
    assert sum(name.startswith("bbh/cot-prompts/") for name in shipped) == 27
