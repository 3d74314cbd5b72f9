"""Shape, structure, dropout and argument checks for the plain torch modules in puffin_bt.nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from puffin_bt import ConfigError, GRUNet, LSTMNet, RecurrentNet, StackedLSTM


@pytest.mark.parametrize("net_cls", [LSTMNet, GRUNet])
@pytest.mark.parametrize(
    ("input_dim", "hidden_dim", "num_layers", "output_dim", "batch", "seq"),
    [(1, 4, 1, 1, 16, 20), (3, 8, 2, 1, 5, 7), (2, 6, 3, 4, 1, 1), (5, 4, 2, 2, 9, 30)],
)
def test_recurrent_nets_map_batch_seq_features_to_batch_output(
    net_cls, input_dim, hidden_dim, num_layers, output_dim, batch, seq
):
    net = net_cls(input_dim=input_dim, hidden_dim=hidden_dim, num_layers=num_layers,
                  output_dim=output_dim, dropout=0.1)
    out = net(torch.randn(batch, seq, input_dim))
    assert out.shape == (batch, output_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("input_dim", "hidden_dims", "output_dim", "batch", "seq"),
    [(1, [8], 1, 16, 20), (1, [8, 6, 4], 1, 4, 10), (5, [6, 4], 3, 2, 30)],
)
def test_stacked_lstm_maps_batch_seq_features_to_batch_output(input_dim, hidden_dims, output_dim, batch, seq):
    net = StackedLSTM(input_dim=input_dim, hidden_dims=hidden_dims, output_dim=output_dim, dropout=0.2)
    out = net(torch.randn(batch, seq, input_dim))
    assert out.shape == (batch, output_dim)


def test_chapter_stacked_lstm_call_gives_batch_by_one():
    model = StackedLSTM(input_dim=1, hidden_dims=[128, 64, 32], output_dim=1, dropout=0.2)
    assert model(torch.randn(16, 20, 1)).shape == torch.Size([16, 1])


def test_stacked_lstm_funnel_is_one_single_layer_lstm_per_hidden_dim():
    model = StackedLSTM(input_dim=1, hidden_dims=[128, 64, 32])
    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert len(lstms) == 3
    assert [m.hidden_size for m in lstms] == [128, 64, 32]
    assert [m.input_size for m in lstms] == [1, 128, 64]
    assert all(m.num_layers == 1 for m in lstms)
    assert model.fc.in_features == 32


def test_lstm_and_gru_nets_share_one_implementation():
    lstm = LSTMNet(hidden_dim=8, num_layers=2)
    gru = GRUNet(hidden_dim=8, num_layers=2)
    assert isinstance(lstm, RecurrentNet) and isinstance(gru, RecurrentNet)
    assert type(lstm).forward is RecurrentNet.forward
    assert type(gru).forward is RecurrentNet.forward
    assert type(lstm.rnn) is nn.LSTM
    assert type(gru.rnn) is nn.GRU
    assert (lstm.rnn.num_layers, lstm.rnn.hidden_size) == (gru.rnn.num_layers, gru.rnn.hidden_size) == (2, 8)


def test_gru_has_fewer_parameters_than_lstm_of_the_same_size():
    def count(net: nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    assert count(GRUNet(hidden_dim=8, num_layers=2)) < count(LSTMNet(hidden_dim=8, num_layers=2))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LSTMNet(hidden_dim=8, num_layers=2, dropout=0.5),
        lambda: GRUNet(hidden_dim=8, num_layers=2, dropout=0.5),
        lambda: StackedLSTM(hidden_dims=[8, 6], dropout=0.5),
    ],
    ids=["lstm", "gru", "stacked"],
)
def test_dropout_is_active_in_train_mode_and_off_in_eval_mode(make):
    torch.manual_seed(0)
    net = make()
    x = torch.randn(32, 10, 1)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("net_cls", [LSTMNet, GRUNet])
def test_dropout_regularises_a_single_layer_net_before_the_head(net_cls):
    torch.manual_seed(0)
    net = net_cls(hidden_dim=8, num_layers=1, dropout=0.5)
    x = torch.randn(32, 10, 1)
    net.eval()
    deterministic = net(x)
    net.train()
    dropped = net(x)
    assert torch.isfinite(dropped).all() and torch.isfinite(deterministic).all()
    assert not torch.allclose(dropped, deterministic)


def test_zero_dropout_makes_train_mode_deterministic():
    torch.manual_seed(0)
    net = LSTMNet(hidden_dim=8, num_layers=2, dropout=0.0).train()
    x = torch.randn(8, 10, 1)
    assert torch.equal(net(x), net(x))


def test_net_reads_the_last_time_step_so_earlier_steps_still_matter():
    torch.manual_seed(0)
    net = GRUNet(hidden_dim=8, num_layers=1, dropout=0.0).eval()
    x = torch.randn(4, 10, 1)
    changed_first = x.clone()
    changed_first[:, 0, :] += 1.0
    out, out_changed = net(x), net(changed_first)
    assert torch.isfinite(out).all() and torch.isfinite(out_changed).all()
    assert not torch.allclose(out, out_changed)


def test_config_round_trips_into_an_identical_architecture():
    net = GRUNet(input_dim=2, hidden_dim=6, num_layers=3, output_dim=2, dropout=0.1)
    clone = RecurrentNet(**net.config())
    clone.load_state_dict(net.state_dict())
    assert clone.config() == net.config()
    x = torch.randn(3, 5, 2)
    assert torch.equal(net.eval()(x), clone.eval()(x))


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: LSTMNet(hidden_dim=0), "hidden_dim"),
        (lambda: GRUNet(hidden_dim=-4), "hidden_dim"),
        (lambda: LSTMNet(num_layers=0), "num_layers"),
        (lambda: LSTMNet(hidden_dim=2.5), "hidden_dim"),
        (lambda: LSTMNet(dropout=1.5), "dropout"),
        (lambda: GRUNet(dropout=1.0), "dropout"),
        (lambda: GRUNet(dropout=-0.1), "dropout"),
        (lambda: RecurrentNet(cell="rnn"), "cell"),
        (lambda: RecurrentNet(cell=3), "cell"),
        (lambda: StackedLSTM(hidden_dims=[]), "hidden_dims"),
        (lambda: StackedLSTM(hidden_dims="64"), "hidden_dims"),
        (lambda: StackedLSTM(hidden_dims=[8, 0]), "hidden_dims"),
        (lambda: StackedLSTM(hidden_dims=[8], dropout=2.0), "dropout"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_parameter(make, param):
    with pytest.raises(ConfigError, match=param):
        make()


def test_cell_name_is_case_insensitive():
    assert type(RecurrentNet(cell="GRU", hidden_dim=4).rnn) is nn.GRU
