"""The batched LSTM engine: same maths as nn.LSTM + Adam, and each model independent of its batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from puffin_bt import ConfigError
from puffin_bt.batched import BatchedGRU, BatchedLSTM, engine_for, supports
from puffin_bt.nets import GRUNet, LSTMNet, RecurrentNet, StackedLSTM
from puffin_bt.training import EarlyStopping, TensorBatches, training_loop


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def nets_for(m: int, seed: int = 0, cell: str = "lstm", **kw) -> list[RecurrentNet]:
    torch.manual_seed(seed)
    return [RecurrentNet(cell, **kw) for _ in range(m)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kw", [
    dict(hidden_dim=5, num_layers=1, dropout=0.0),
    dict(hidden_dim=32, num_layers=2, dropout=0.0),
    dict(hidden_dim=7, num_layers=3, dropout=0.0),
    dict(input_dim=3, hidden_dim=6, num_layers=2, output_dim=2, dropout=0.0),
])
def test_forward_and_gradients_equal_autograd_through_nn_lstm_and_gru(float64, kw, cell):
    nets = nets_for(3, cell=cell, **kw)
    engine = engine_for(nets)
    x = torch.randn(3, 9, 6, kw.get("input_dim", 1))
    y = torch.randn(3, 9, kw.get("output_dim", 1))
    out, cache = engine.forward(x, train=True)
    ref = torch.stack([net(x[m]) for m, net in enumerate(nets)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    diff = out - y
    engine.backward(diff * (2.0 / diff[0].numel()), cache)
    for m, net in enumerate(nets):
        net.zero_grad()
        nn.functional.mse_loss(net(x[m]), y[m]).backward()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.grad)  # load the gradients as weights to compare them in the engine's layout
    torch.testing.assert_close(engine.grads, engine_for(nets).params, rtol=0, atol=1e-12)


def reference_fit(net, x, y, xv, yv, epochs, lr, wd, batch_size, seed, patience):
    """puffin_bt's autograd path: TensorBatches order, torch.optim.Adam, training_loop, EarlyStopping."""
    gen = torch.Generator().manual_seed(seed)
    loader = TensorBatches(x, y, batch_size, shuffle=True, generator=gen)
    val = TensorBatches(xv, yv, 1024) if xv is not None else None
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    cbs = [EarlyStopping(patience=patience)] if patience is not None and val is not None else []
    return training_loop(net, loader, val, epochs, opt, nn.MSELoss(), callbacks=cbs)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("patience, wd, n_val", [(None, 0.0, 12), (1, 1e-3, 12), (2, 0.0, 12), (None, 0.0, 0)])
def test_training_equals_the_autograd_path(float64, patience, wd, n_val, cell):
    nets = nets_for(3, seed=4, cell=cell, hidden_dim=6, num_layers=2, dropout=0.0)
    refs = copy.deepcopy(nets)
    x, y = torch.randn(3, 45, 8, 1), torch.randn(3, 45, 1)
    xv, yv = (torch.randn(3, n_val, 8, 1), torch.randn(3, n_val, 1)) if n_val else (None, None)
    engine = engine_for(nets)
    hists = engine.fit(x, y, xv, yv, epochs=6, lr=0.05, batch_size=8, seeds=[3, 4, 5], weight_decay=wd,
                       patience=patience)
    engine.write_back(nets)
    for m, (net, ref) in enumerate(zip(nets, refs)):
        hist = reference_fit(ref, x[m], y[m], None if xv is None else xv[m], None if yv is None else yv[m],
                             6, 0.05, wd, 8, 3 + m, patience)
        for a, b in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
        np.testing.assert_allclose(hists[m]["train_loss"], hist["train_loss"], rtol=1e-9)
        if xv is not None:  # (without validation data both are NaN by design)
            assert np.isfinite(hist["val_loss"]).sum() >= 1
        np.testing.assert_allclose(hists[m]["val_loss"], hist["val_loss"], rtol=1e-9, equal_nan=True)
        assert (hists[m]["best_epoch"], hists[m]["stopped_epoch"]) == (hist["best_epoch"], hist["stopped_epoch"])
    if patience == 1:  # the lr is high enough that some model stops early, so stopping is exercised
        assert any(h["stopped_epoch"] is not None for h in hists)


configs = st.fixed_dictionaries({
    "cell": st.sampled_from(["lstm", "gru"]),
    "input_dim": st.sampled_from([1, 3]),
    "hidden_dim": st.sampled_from([3, 5, 16, 33]),
    "num_layers": st.integers(1, 3),
    "dropout": st.sampled_from([0.0, 0.3]),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kw=configs, n=st.integers(9, 40), batch=st.integers(1, 16), patience=st.sampled_from([None, 1]),
       noise=st.sampled_from([0.0, 0.1]), pick=st.integers(0, 4), m=st.integers(2, 5), seed=st.integers(0, 99))
def test_a_models_result_is_bit_identical_whatever_it_is_trained_with(kw, n, batch, patience, noise, pick, m, seed):
    pick = pick % m
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(m, n, 6, kw["input_dim"], generator=g), torch.randn(m, n, 1, generator=g)
    xv, yv = torch.randn(m, 7, 6, kw["input_dim"], generator=g), torch.randn(m, 7, 1, generator=g)

    def train(rows):
        nets = [nets_for(1, seed=seed + r, **kw)[0] for r in rows]
        engine = engine_for(nets)
        hists = engine.fit(x[rows], y[rows], xv[rows], yv[rows], epochs=3, lr=0.02, batch_size=batch,
                           seeds=[seed + r for r in rows], patience=patience, noise_std=noise)
        engine.write_back(nets)
        return nets[rows.index(pick)], hists[rows.index(pick)]

    alone, h_alone = train([pick])
    together, h_together = train(list(range(m)))
    for a, b in zip(alone.parameters(), together.parameters()):
        assert torch.equal(a, b)
    assert h_alone == h_together


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_scratch_memory_does_not_grow_with_epochs(cell):
    """Buffers and per-step view caches are reused: an epoch's shorter last batch, the validation
    passes and dropout masks used to add a set per step or epoch (~0.8 GB over one 10-epoch fit
    of eight 64x2 LSTMs)."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(3, 45, 6, 1, generator=g), torch.randn(3, 45, 1, generator=g)  # batches of 8: 5 short

    def scratch(epochs):
        engine = engine_for(nets_for(3, cell=cell, hidden_dim=5, num_layers=3, dropout=0.3))
        engine.fit(x, y, x[:, :11], y[:, :11], epochs=epochs, lr=1e-3, batch_size=8, seeds=[0, 1, 2], patience=50)
        return len(engine._buffers), len(engine._view_cache), sum(b.numel() for b in engine._buffers.values())

    assert scratch(2) == scratch(6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_independence_holds_with_two_intra_op_threads(cell):
    """The suite runs single-threaded; a user may set threads=2 (the GEMMs then split across threads)."""
    from puffin_bt.training import torch_threads

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 150, 20, 1, generator=g), torch.randn(6, 150, 1, generator=g)

    def train(rows):
        nets = [nets_for(1, seed=r, cell=cell, hidden_dim=64, num_layers=2, dropout=0.2)[0] for r in rows]
        engine = engine_for(nets)
        engine.fit(x[rows], y[rows], x[rows, :30], y[rows, :30], epochs=2, lr=1e-3, batch_size=32, seeds=list(rows))
        return engine.params[rows.index(2)].clone()

    with torch_threads(2):
        assert torch.get_num_threads() == 2
        assert torch.equal(train([2]), train(list(range(6))))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padded_hidden_units_stay_zero_and_do_not_leak_into_the_nets(cell):
    nets = nets_for(2, cell=cell, hidden_dim=5, num_layers=2, dropout=0.2)
    engine = engine_for(nets)
    assert engine.H == 32 and engine.hidden == 5
    engine.fit(torch.randn(2, 30, 4, 1), torch.randn(2, 30, 1), None, None, epochs=3, lr=0.05, batch_size=7,
               seeds=[0, 1], weight_decay=1e-2)
    for layer in engine.layers:
        for w in (layer.w_hh, layer.b_ih, layer.b_hh):
            gates = w.unflatten(-1, (engine.GATES, 32))
            assert torch.count_nonzero(gates[..., 5:]) == 0
        assert torch.count_nonzero(layer.w_hh[:, 5:]) == 0
    engine.write_back(nets)
    x = torch.randn(2, 11, 4, 1)
    out = engine.predict(x)
    ref = torch.stack([net.eval()(x[m]) for m, net in enumerate(nets)]).detach()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_unsupported_or_mixed_networks_are_refused():
    assert supports(LSTMNet()) and supports(GRUNet()) and not supports(StackedLSTM())
    assert isinstance(engine_for([GRUNet(hidden_dim=4)]), BatchedGRU)
    with pytest.raises(ConfigError, match="GRUNet is not a LSTM"):
        BatchedLSTM([GRUNet()])
    with pytest.raises(ConfigError, match="StackedLSTM"):
        engine_for([StackedLSTM()])
    with pytest.raises(ConfigError, match="same configuration"):
        BatchedLSTM([LSTMNet(hidden_dim=4), LSTMNet(hidden_dim=5)])
    with pytest.raises(ConfigError, match="at least one"):
        BatchedLSTM([])
