"""Options that change forecasts are flagged once in the registry, and exactly those key the forecast store and
the grouping of tickers walked forward together: flipping any flagged option changes both keys (no stale
forecasts served), flipping any other walk-forward option changes neither (no needless recomputation)."""

from __future__ import annotations

import numpy as np
import pytest

from puffin_bt import tickers
from puffin_bt.globalmodel import make_global_walk_forward
from puffin_bt.options import OPTIONS, FitConfig, IntervalConfig, forecast_defaults, keyed_names, names
from puffin_bt.store import fingerprint, keyed_options
from puffin_bt.walkforward import make_walk_forward

from .conftest import synthetic_closes

BASE = {"device": "cpu", "interval": 0.8}  # an interval on, so that its method and step size matter
# A second valid value for each option (the default is the first); a newly flagged option without one fails
# test_every_flagged_option_has_a_flip, so none can be forgotten.
FLIPS = {
    "lookback": 30, "retrain_every": 10, "train_window": None, "min_train": 300, "epochs": 3, "refit_epochs": None,
    "hidden_dim": 8, "num_layers": 1, "dropout": 0.1, "lr": 0.01, "batch_size": 16, "weight_decay": 0.01,
    "noise_level": 0.1, "validation_split": 0.3, "patience": None, "horizon": 2, "seed": 1, "features": ("volume",),
    "ensemble": 2, "ensemble_method": "folds", "interval": 0.9, "interval_method": "aci", "aci_gamma": 0.01,
    "target": "volatility", "global_chains": 1,
    # not flagged: how the work is spread, never what it computes
    "threads": None, "fold_workers": 1,
}
# What a flip needs besides (compared with the same base): an ensemble's method needs an ensemble
NEEDS = {"ensemble_method": {"ensemble": 2}, "target": {"interval": None}}  # a volatility target has no interval
CLOSES = synthetic_closes(400, seed=1)


def _keys(cell: str, options: dict) -> tuple[str, str]:
    features = np.ones((len(CLOSES), 1)) if options.get("features") else None
    walk = make_walk_forward(cell, **options)
    return fingerprint(walk, CLOSES, features=features), tickers._signature(cell, options)


def test_every_flagged_option_has_a_flip_and_only_walk_forward_options_are_flagged():
    assert set(keyed_names()) <= set(FLIPS)
    assert set(keyed_names()) <= set(names("forecast"))
    assert set(names("forecast")) - set(keyed_names()) == {"device", "threads", "fold_workers"}


@pytest.mark.parametrize("name", keyed_names())
def test_flipping_a_flagged_option_changes_the_store_key_and_the_lockstep_group(name):
    assert FLIPS[name] != forecast_defaults()[name]
    base = {**BASE, **NEEDS.get(name, {})}
    store_key, group = _keys("lstm", base)
    flipped = _keys("lstm", {**base, name: FLIPS[name]})
    assert flipped[0] != store_key, f"{name} changes forecasts but not the store key: stale forecasts served"
    assert flipped[1] != group, f"{name} changes forecasts but not the lockstep group"


@pytest.mark.parametrize("name", sorted(set(names("forecast")) - set(keyed_names()) - {"device"}))
def test_flipping_an_unflagged_option_keeps_both_keys(name):
    assert _keys("lstm", {**BASE, name: FLIPS[name]}) == _keys("lstm", BASE)


def test_the_device_keys_by_the_type_it_resolves_to_and_the_family_keys_too():
    assert _keys("lstm", {**BASE, "device": "auto"})[0] == _keys("lstm", BASE)[0] or \
        make_walk_forward("lstm", device="auto").device.type != "cpu"
    assert _keys("gru", BASE)[0] != _keys("lstm", BASE)[0] != _keys("tcn", BASE)[0]
    assert _keys("gru", BASE)[1] != _keys("lstm", BASE)[1]


def test_walk_forward_and_global_walk_forward_take_the_same_option_sets():
    walk = make_walk_forward("lstm", epochs=3, threads=None, hidden_dim=8)
    glob = make_global_walk_forward("lstm", epochs=3, threads=None, hidden_dim=8)
    assert (glob.config, glob.schedule, glob.fit) == (walk.config, walk.schedule, walk.fit)
    assert walk.fit == FitConfig(epochs=3, threads=None) and walk.uncertainty == IntervalConfig()
    assert FitConfig.NAMES == names("fit") and IntervalConfig.NAMES == names("uncertainty")
    assert set(OPTIONS) >= set(FitConfig.NAMES)


def test_an_option_keyed_only_away_from_its_default_leaves_the_return_models_keys_as_they_were():
    """``target`` came after forecasts were stored: at its default ("return") it is in neither key, so those
    entries are still found; away from it, it is in both."""
    assert "target" not in keyed_options(make_walk_forward("lstm", **BASE))
    assert "target" not in tickers._signature("lstm", BASE)
    volatility = {**BASE, "interval": None, "target": "volatility"}
    assert keyed_options(make_walk_forward("lstm", **volatility))["target"] == "volatility"
    assert "'target', 'volatility'" in tickers._signature("lstm", volatility)
