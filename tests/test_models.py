"""The model-family registry (``puffin_bt/models/``): every list of families derives from it, and a family's name
appears nowhere else in the package except as a default value."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from puffin_bt import ConfigError, ModelConfig
from puffin_bt.models import FAMILIES, family, model_list
from puffin_bt.options import CELLS

PACKAGE = Path(__file__).resolve().parents[1] / "puffin_bt"
# The recurrent network and its batched engines: the implementations models/lstm.py and models/gru.py declare
# (RecurrentNet picks nn.LSTM or nn.GRU by the cell's name; each engine tags the cell it computes).
IMPLEMENTATIONS = {"nets.py", "batched.py"}


def _defaults(tree: ast.AST) -> set[int]:
    """ids of the constants used as default values: parameter defaults, and ``cell = ...``/``DEFAULT_CELL = ...``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found |= {id(d) for d in [*node.args.defaults, *node.args.kw_defaults] if d is not None}
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in ("cell", "DEFAULT_CELL")
                                                  for t in node.targets):
            found.add(id(node.value))
    return found


def _family_names_outside_models(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "models" or str(relative) in IMPLEMENTATIONS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = _defaults(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in FAMILIES \
                    and id(node) not in allowed:
                found.append(f"{relative}:{node.lineno}: {node.value!r}")
    return found


def test_no_family_name_is_listed_outside_models_except_as_a_default():
    assert _family_names_outside_models() == []


def test_the_check_catches_a_family_listed_in_code(tmp_path):
    (tmp_path / "cli.py").write_text('class A:\n    cell = "gru"\n\n\ndef f(model="lstm"):\n'
                                     '    return model in ("lstm", "tcn")\n', encoding="utf-8")
    assert _family_names_outside_models(tmp_path) == ["cli.py:6: 'lstm'", "cli.py:6: 'tcn'"]


def test_the_cell_option_is_the_registry_default_first():
    assert CELLS == tuple(FAMILIES) and CELLS[0] == ModelConfig().cell
    assert {"lstm", "gru", "tcn"} <= set(CELLS)
    with pytest.raises(ConfigError, match="'rnn' is not a known model family; use one of"):
        ModelConfig(cell="rnn")
    with pytest.raises(ConfigError, match="tcn"):
        family("transformer")


@pytest.mark.parametrize("text, expected", [
    ("tcn", ("tcn",)), ("LSTM, tcn", ("lstm", "tcn")), ("both", ("lstm", "gru")), ("all", CELLS),
])
def test_model_list_reads_one_family_a_list_all_or_both(text, expected):
    assert model_list(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("lstm,rnn", "'rnn' is not a model family"), ("lstm,lstm", "twice"), ("", "not known"), ("all,tcn", "'all'"),
])
def test_model_list_refuses_unknown_or_repeated_families(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        model_list(text)


@pytest.mark.parametrize("module", ["walkforward", "globalmodel", "universe", "fitting", "nets", "batched",
                                    "checkpoint", "tickers", "forecaster", "models", "models.tcn"])
def test_public_modules_name_their_public_api_and_it_exists(module):
    import importlib

    mod = importlib.import_module(f"puffin_bt.{module}")
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)
    assert not [name for name in mod.__all__ if name.startswith("_")]
