"""EarlyStopping, training_loop, set_seed and resolve_device, exercised with real (tiny) torch training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from puffin_bt import (
    DeviceError,
    EarlyStopping,
    LSTMNet,
    TensorBatches,
    resolve_device,
    set_seed,
    training_loop,
)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def set_linear(model: nn.Linear, w: float, b: float = 0.0) -> None:
    with torch.no_grad():
        model.weight.fill_(w)
        model.bias.fill_(b)


def diverging_problem(n: int = 64):
    """Train on y = 2x, validate on y = 0.5x: starting from w=0 the validation loss
    falls while w passes 0.5, then rises, so the best epoch lies strictly inside the run."""
    gen = torch.Generator().manual_seed(0)
    x_train = torch.randn(n, 1, generator=gen)
    x_val = torch.randn(n, 1, generator=gen)
    train = [(x_train, 2.0 * x_train)]
    val = [(x_val, 0.5 * x_val)]
    model = nn.Linear(1, 1)
    set_linear(model, 0.0)
    return model, train, val


def run_capturing_weights(model, train, val, epochs, callbacks, lr=0.02):
    snapshots: list[dict[str, torch.Tensor]] = []
    history = training_loop(
        model, train, val, epochs, torch.optim.SGD(model.parameters(), lr=lr), nn.MSELoss(),
        callbacks=callbacks, on_epoch_end=lambda epoch, tr, va: snapshots.append(weights_of(model)),
    )
    return history, snapshots


# --- EarlyStopping on its own -------------------------------------------------------------


def test_early_stopping_stops_after_exactly_patience_bad_epochs():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=3)
    decisions = [early_stop(v, model) for v in (1.0, 1.1, 1.2, 1.3)]
    assert decisions == [False, False, False, True]
    assert early_stop.stopped_epoch == 3
    assert early_stop.best_epoch == 0


def test_early_stopping_counter_resets_on_improvement():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=2)
    decisions = [early_stop(v, model) for v in (1.0, 1.5, 0.9, 1.5, 1.6)]
    assert decisions == [False, False, False, False, True]
    assert early_stop.best_epoch == 2


def test_early_stopping_honours_min_delta():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=2, min_delta=0.1)
    # 0.95 is better than 1.0 but by less than min_delta: it counts as a bad epoch.
    assert early_stop(1.0, model) is False
    assert early_stop(0.95, model) is False
    assert early_stop.best_loss == 1.0 and early_stop.counter == 1
    assert early_stop(0.85, model) is False  # improves by 0.15 > min_delta
    assert early_stop.best_loss == 0.85 and early_stop.counter == 0
    assert early_stop(0.8, model) is False
    assert early_stop(0.78, model) is True


def test_early_stopping_treats_nan_validation_loss_as_no_improvement():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=2)
    assert [early_stop(v, model) for v in (1.0, math.nan, math.nan)] == [False, False, True]
    assert early_stop.best_loss == 1.0


def test_early_stopping_restores_best_weights_when_it_triggers():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=2, restore_best_weights=True)
    for w, loss in [(1.0, 3.0), (2.0, 1.0), (3.0, 2.0), (4.0, 5.0)]:
        set_linear(model, w, -w)
        stop = early_stop(loss, model)
    assert stop is True
    assert model.weight.item() == 2.0 and model.bias.item() == -2.0


def test_early_stopping_restore_loads_best_weights_when_epochs_run_out():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=10)
    for w, loss in [(1.0, 3.0), (2.0, 1.0), (3.0, 2.0)]:
        set_linear(model, w)
        assert early_stop(loss, model) is False
    assert model.weight.item() == 3.0
    assert early_stop.restore(model) is True
    assert model.weight.item() == 2.0


def test_early_stopping_without_restore_leaves_weights_alone():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=1, restore_best_weights=False)
    set_linear(model, 1.0)
    early_stop(1.0, model)
    set_linear(model, 7.0)
    assert early_stop(2.0, model) is True
    assert early_stop.restore(model) is False
    assert model.weight.item() == 7.0


def test_early_stopping_best_weights_are_a_copy_not_a_live_view():
    model = nn.Linear(1, 1)
    early_stop = EarlyStopping(patience=5)
    set_linear(model, 1.0)
    early_stop(1.0, model)
    with torch.no_grad():
        model.weight.add_(5.0)  # in-place, as an optimizer step would
    early_stop.restore(model)
    assert model.weight.item() == 1.0


@pytest.mark.parametrize(("kwargs", "param"), [({"patience": 0}, "patience"), ({"min_delta": -1.0}, "min_delta")])
def test_early_stopping_rejects_bad_arguments(kwargs, param):
    with pytest.raises(ValueError, match=param):
        EarlyStopping(**kwargs)


# --- EarlyStopping inside training_loop ---------------------------------------------------


def test_training_loop_stops_after_exactly_patience_epochs_without_improvement():
    model = nn.Linear(1, 1)
    x = torch.randn(20, 1)
    data = [(x, 3 * x)]
    # lr=0 freezes the model: epoch 0 sets the best loss, every later epoch only ties it.
    history = training_loop(model, data, data, 50, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss(),
                            callbacks=[EarlyStopping(patience=3)])
    assert len(history["val_loss"]) == 4
    assert history["stopped_epoch"] == 3
    assert history["best_epoch"] == 0


def test_training_loop_restores_best_weights_when_early_stopping_triggers():
    model, train, val = diverging_problem()
    history, snapshots = run_capturing_weights(model, train, val, 200, [EarlyStopping(patience=2)])
    best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
    assert 0 < best < len(history["val_loss"]) - 1
    assert history["best_epoch"] == best
    assert history["stopped_epoch"] == best + 2 == len(history["val_loss"]) - 1
    assert same_weights(weights_of(model), snapshots[best])
    assert not same_weights(weights_of(model), snapshots[-1])


def test_training_loop_restores_best_weights_when_epochs_run_out():
    model, train, val = diverging_problem()
    epochs = 15
    history, snapshots = run_capturing_weights(model, train, val, epochs, [EarlyStopping(patience=100)])
    assert len(history["val_loss"]) == epochs
    assert history["stopped_epoch"] is None
    best = min(range(epochs), key=history["val_loss"].__getitem__)
    assert 0 < best < epochs - 1
    assert history["best_epoch"] == best
    assert same_weights(weights_of(model), snapshots[best])
    assert not same_weights(weights_of(model), snapshots[-1])


def test_training_loop_calls_callbacks_as_val_loss_and_model():
    model, train, val = diverging_problem()
    seen = []

    def spy(val_loss, net):
        seen.append((val_loss, net))
        return False

    history = training_loop(model, train, val, 3, torch.optim.SGD(model.parameters(), lr=0.02), nn.MSELoss(),
                            callbacks=[spy])
    assert [v for v, _ in seen] == history["val_loss"]
    assert all(net is model for _, net in seen)


def test_training_loop_monitors_train_loss_without_validation_data():
    model = nn.Linear(1, 1)
    x = torch.randn(20, 1)
    history = training_loop(model, [(x, x)], None, 10, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss(),
                            callbacks=[EarlyStopping(patience=2)])
    assert all(math.isnan(v) for v in history["val_loss"])
    assert history["stopped_epoch"] == 2


# --- losses ---------------------------------------------------------------------------------


def frozen_linear(w: float = 0.5, b: float = 0.1) -> nn.Linear:
    model = nn.Linear(1, 1)
    set_linear(model, w, b)
    return model


def uneven_batches_case():
    """10 samples in batches of 4, 4, 2; the short last batch has a much larger error."""
    x = torch.linspace(-1.0, 1.0, 10).unsqueeze(1)
    y = torch.zeros(10, 1)
    y[8:] = 10.0
    return x, y


def exact_mse(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    w, b = model.weight.item(), model.bias.item()
    pred = w * x.double().reshape(-1) + b
    return float(((pred - y.double().reshape(-1)) ** 2).mean())


def test_training_loop_returns_plain_float_loss_lists():
    model = LSTMNet(hidden_dim=4, num_layers=1)
    data = [(torch.randn(8, 5, 1), torch.randn(8, 1))]
    history = training_loop(model, data, data, 2, torch.optim.Adam(model.parameters(), lr=1e-3), nn.MSELoss())
    for key in ("train_loss", "val_loss"):
        assert isinstance(history[key], list) and len(history[key]) == 2
        assert all(type(v) is float and math.isfinite(v) for v in history[key])


def test_train_loss_is_the_sample_weighted_mean_over_uneven_batches():
    model = frozen_linear()
    x, y = uneven_batches_case()
    loader = TensorBatches(x, y, batch_size=4)
    history = training_loop(model, loader, loader, 1, torch.optim.SGD(model.parameters(), lr=0.0), nn.MSELoss())
    expected = exact_mse(model, x, y)
    batch_means = [exact_mse(model, x[i:i + 4], y[i:i + 4]) for i in range(0, 10, 4)]
    assert abs(sum(batch_means) / len(batch_means) - expected) > 1.0  # the unweighted mean would be wrong
    assert history["train_loss"][0] == pytest.approx(expected, rel=1e-6)
    assert history["val_loss"][0] == pytest.approx(expected, rel=1e-6)


def test_one_dimensional_targets_give_the_same_loss_as_column_targets():
    x, y = uneven_batches_case()
    histories = []
    for targets in (y, y.reshape(-1)):
        model = frozen_linear()
        loader = TensorBatches(x, targets, batch_size=4)
        histories.append(training_loop(model, loader, loader, 1, torch.optim.SGD(model.parameters(), lr=0.0),
                                       nn.MSELoss()))
    expected = exact_mse(frozen_linear(), x, y)
    for history in histories:
        assert history["train_loss"][0] == pytest.approx(expected, rel=1e-6)
        assert history["val_loss"][0] == pytest.approx(expected, rel=1e-6)


def test_noise_is_added_to_training_inputs_only():
    x, y = uneven_batches_case()
    loader = TensorBatches(x, y, batch_size=4)
    results = {}
    for noise_std in (0.0, 0.5):
        torch.manual_seed(0)
        model = frozen_linear()
        results[noise_std] = training_loop(model, loader, loader, 2, torch.optim.SGD(model.parameters(), lr=0.0),
                                           nn.MSELoss(), noise_std=noise_std)
    assert results[0.5]["val_loss"] == results[0.0]["val_loss"]
    assert results[0.5]["train_loss"] != results[0.0]["train_loss"]
    assert results[0.0]["train_loss"][0] == pytest.approx(results[0.0]["val_loss"][0], rel=1e-6)


# --- seeding and devices ----------------------------------------------------------------------


def seeded_run(seed: int):
    set_seed(seed)
    model = LSTMNet(hidden_dim=4, num_layers=1, dropout=0.3)
    x, y = torch.randn(40, 6, 1), torch.randn(40, 1)
    loader = TensorBatches(x, y, batch_size=8, shuffle=True)
    history = training_loop(model, loader, [(x[:8], y[:8])], 2, torch.optim.Adam(model.parameters(), lr=1e-2),
                            nn.MSELoss(), noise_std=0.1)
    return history, weights_of(model)


def test_set_seed_makes_two_runs_identical():
    (hist_a, weights_a), (hist_b, weights_b) = seeded_run(3), seeded_run(3)
    assert hist_a == hist_b
    assert same_weights(weights_a, weights_b)


def test_different_seeds_give_different_runs():
    (hist_a, weights_a), (hist_b, weights_b) = seeded_run(3), seeded_run(4)
    assert hist_a["train_loss"] != hist_b["train_loss"]
    assert not same_weights(weights_a, weights_b)


def test_set_seed_rejects_negative_seed():
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                    reason="auto picks an accelerator on this machine")
def test_auto_device_is_cpu_without_an_accelerator():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_cpu_device_resolves_to_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_requesting_cuda_without_a_gpu_raises_device_error():
    with pytest.raises(DeviceError, match="cuda"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["banana", "tpu", 3.5])
def test_unknown_device_raises_device_error(name):
    with pytest.raises(DeviceError, match="device"):
        resolve_device(name)


def test_training_loop_moves_the_model_to_the_requested_device():
    model = nn.Linear(1, 1)
    x = torch.randn(4, 1)
    training_loop(model, [(x, x)], None, 1, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(),
                  device="cpu")
    assert next(model.parameters()).device == torch.device("cpu")
    with pytest.raises(DeviceError):
        training_loop(model, [(x, x)], None, 1, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(),
                      device="banana")


def test_one_early_stopping_reused_across_training_loops_starts_fresh():
    early_stop = EarlyStopping(patience=2)
    histories = []
    for _ in range(2):
        model, train, val = diverging_problem()
        histories.append(training_loop(model, train, val, 30, torch.optim.SGD(model.parameters(), lr=0.02),
                                       nn.MSELoss(), callbacks=[early_stop]))
    assert histories[0]["stopped_epoch"] is not None
    assert histories[1] == histories[0]


def test_torch_threads_sets_and_restores_the_thread_count():
    from puffin_bt.training import torch_threads

    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_walk_forward_trains_with_its_thread_setting_and_leaves_the_callers_alone():
    from puffin_bt.walkforward import make_walk_forward

    seen = []
    before = torch.get_num_threads()
    walk = make_walk_forward("lstm", on_fold=lambda rec: seen.append(torch.get_num_threads()), threads=2,
                               hidden_dim=2, num_layers=1, epochs=1, lookback=5, min_train=40, retrain_every=30,
                               device="cpu")
    import numpy as np

    walk.run(100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 100))))
    assert seen == [2, 2, 2] and torch.get_num_threads() == before  # folds at bars 39, 69, 99
