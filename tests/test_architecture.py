"""The package's shape: layers without import circles, one options registry behind every entry point,
public names only between packages, scikit-learn's estimator contract."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import puffin_bt
from puffin_bt import ModelConfig, TradingGRU, TradingLSTM
from puffin_bt.adapters.indicators import FORECAST_PARAMS, LSTMForecast
from puffin_bt.cli import build_parser
from puffin_bt.errors import ConfigError
from puffin_bt.options import BACKTEST_GROUPS, ESTIMATOR_DEFAULTS, OPTIONS, defaults, names, resolve
from puffin_bt.schedule import FoldSchedule
from strategies import ForecastThresholdStrategy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("puffin_bt", "strategies", include_external_packages=True)


def _cycle(graph) -> list[str] | None:
    """One import circle among puffin_bt's and strategies' modules (imports inside functions count), or None."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in ("puffin_bt", "strategies"))
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in modules:
                continue
            if state.get(imported) == 1:
                return stack[stack.index(imported):] + [imported]
            if imported not in state:
                found = visit(imported)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return None

    for module in modules:
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_circle_counting_imports_inside_functions(graph):
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_circle(graph):
    graph.add_import(importer="puffin_bt.windows", imported="puffin_bt.walkforward", line_number=1,
                     line_contents="from .walkforward import WalkForward")
    assert _cycle(graph) is not None
    graph.remove_import(importer="puffin_bt.windows", imported="puffin_bt.walkforward")


def test_no_submodule_imports_the_package_root(graph):
    assert graph.find_modules_that_directly_import("puffin_bt") == set()


def test_the_import_contracts_hold():
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_strategies_use_public_names_only():
    for path in (ROOT / "strategies").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("puffin_bt"):
                assert not any(part.startswith("_") for part in node.module.split(".")), (path.name, node.module)
                assert not any(alias.name.startswith("_") for alias in node.names), (path.name, node.module)


def test_walk_forward_keeps_a_small_public_surface():
    # the methods and properties a user (or an indicator) calls; the fold pool, cold batching and the
    # universe's job hand-over are underscored machinery
    from puffin_bt.walkforward import WalkForward

    public = {name for name in vars(WalkForward) if not name.startswith("_")}
    assert public == {"run", "forecast_lines", "advance_lines", "train_fold", "current_fold"}


def _all_of(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):  # its literal names (a *spread not)
            return [n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return None


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.If)):  # if TYPE_CHECKING: a lazy __getattr__'s names
            names.update((alias.asname or alias.name).split(".")[0] for imp in ast.walk(node)
                         if isinstance(imp, (ast.Import, ast.ImportFrom)) for alias in imp.names)
        for target in [*getattr(node, "targets", []), getattr(node, "target", None)]:
            if target is not None:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def test_every_public_module_declares_its_public_names():
    # a module whose path has no underscored part is public: __all__ lists its names meant for users and other
    # layers (empty for one of private helpers), each defined there and none underscored
    checked = 0
    for path in sorted((ROOT / "puffin_bt").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__" or any(part.startswith("_") for part in parts):
            continue
        tree = ast.parse(path.read_text())
        declared = _all_of(tree)
        assert declared is not None, f"{path.relative_to(ROOT)} has no __all__"
        assert set(declared) <= _top_level_names(tree), (path.name, set(declared) - _top_level_names(tree))
        assert not [name for name in declared if name.startswith("_")], path.name
        checked += 1
    assert checked > 40


# --------------------------------------------------------------------------- one options registry


def test_model_config_and_schedule_fields_are_the_registry_options():
    assert set(ModelConfig.NAMES) - {"cell"} == set(names("model"))
    assert set(FoldSchedule.NAMES) == set(names("schedule"))
    assert ModelConfig().to_dict() == {"cell": "lstm", **defaults("model")}
    assert FoldSchedule().to_dict() == defaults("schedule")


def test_indicator_strategy_backtest_and_cli_take_their_options_from_the_registry():
    assert dict(FORECAST_PARAMS) == {**defaults("forecast"), "store": None, "on_fold": None, "model_dir": None}
    assert {k: getattr(LSTMForecast.params, k) for k in names("forecast")} == defaults("forecast")
    strategy_params = dict(ForecastThresholdStrategy.params._getitems())
    assert {k: strategy_params[k] for k in names("strategy")} == defaults("strategy")
    signature = inspect.signature(puffin_bt.backtest).parameters
    for name in names(*BACKTEST_GROUPS):
        assert signature[name].default == OPTIONS[name].default, name
    assert "hidden_dim" in puffin_bt.backtest.__doc__ and OPTIONS["hidden_dim"].help in puffin_bt.backtest.__doc__
    help_text = build_parser()._subparsers._group_actions[0].choices["backtest"].format_help()
    for name in names(*BACKTEST_GROUPS):
        assert OPTIONS[name].flag in help_text, name


def test_one_patience_default_everywhere():
    five = OPTIONS["patience"].default
    assert ModelConfig().patience == five == TradingLSTM().patience == LSTMForecast.params.patience
    assert inspect.signature(puffin_bt.EarlyStopping).parameters["patience"].default == five


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_option_has_help_and_refuses_a_wrong_type(name):
    option = OPTIONS[name]
    assert option.help and option.groups
    assert option.check(option.default) == option.default
    with pytest.raises(ConfigError, match=name):
        option.check(object())


def test_an_unknown_option_is_one_error_that_suggests_the_name():
    with pytest.raises(ConfigError, match=r"'hiden_dim' \(did you mean 'hidden_dim'\?\)"):
        resolve({"hiden_dim": 8}, ["forecast"], "backtest()")
    with pytest.raises(ConfigError, match="did you mean 'hidden_dim'"):
        puffin_bt.walk_forward([1.0] * 10, hiden_dim=8)
    with pytest.raises(ConfigError, match="did you mean 'hidden_dim'"):
        TradingLSTM(hiden_dim=8)


# --------------------------------------------------------------------------- scikit-learn's estimator contract


def test_estimators_keep_scikit_learns_contract():
    from sklearn.base import clone

    model = TradingGRU(hidden_dim=8, lookback=10, patience=None)
    assert model.get_params(deep=True) == {**ESTIMATOR_DEFAULTS, "hidden_dim": 8, "lookback": 10, "patience": None}
    twin = clone(model)
    assert type(twin) is TradingGRU and twin is not model and twin.get_params() == model.get_params()
    assert twin.model is None  # an unfitted copy
    assert model.set_params(hidden_dim=4, dropout=0.0) is model and model.hidden_dim == 4 and model.dropout == 0.0
    with pytest.raises(ConfigError, match="hiden"):
        model.set_params(hiden=3)
    params = list(inspect.signature(TradingLSTM).parameters)
    assert params == list(ESTIMATOR_DEFAULTS)  # introspected from __init__, whose signature is the registry's
