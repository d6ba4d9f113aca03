"""Hostile input for layers and losses: wrong shapes, dtypes and devices, bad hyperparameters, empty
batches, out-of-range targets. Each case is one function run on torch and on tinygrad_rnn alike
(`lib` is either, with `lib.nn` and `lib.F`): where torch answers, ours must give the same answer;
where torch raises, ours must raise a package error of the same builtin kind (IndexError,
ValueError, TypeError, RuntimeError), and the message must name what was wrong."""
import types
import warnings

import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.errors import DeviceError, DTypeError, TinyGradRNNError


def _lib(module):
    nn = module.nn
    return types.SimpleNamespace(tensor=module.tensor, zeros=module.zeros, ones=module.ones, nn=nn,
                                 F=nn.functional, float64=module.float64, int64=module.int64, int32=module.int32)


def _fixed(module):
    """Every parameter set to the same deterministic values in both libraries (through .data, as
    ported code does)."""
    for p in module.parameters():
        values = np.cos(np.arange(p.numel(), dtype=np.float64) * 0.7).reshape(tuple(p.shape)) * 0.5
        p.data.copy_(_as(p, values))
    return module


def _as(like, values):
    """values as a tensor of like's library and dtype."""
    if isinstance(like, tg.Tensor):
        return tg.tensor(values, dtype=like.dtype)
    return torch.tensor(values, dtype=like.dtype)


def _x(lib, *shape, dtype=None):
    """Deterministic input of a shape, float32 unless told."""
    values = np.sin(np.arange(int(np.prod(shape)), dtype=np.float64) + 1.0).reshape(shape)
    return lib.tensor(values.astype(np.float32)) if dtype is None else lib.tensor(values, dtype=dtype)


def _logits(lib, *shape):
    return _x(lib, *shape).mul(3.0)


def _targets(lib, values, dtype=None):
    return lib.tensor(values, dtype=lib.int64 if dtype is None else dtype)


def _probabilities(lib, *shape):
    return _x(lib, *shape).sigmoid()


# name: (fn(lib), words our message must contain, or None where torch answers)
LAYER_CASES = {
    # Linear
    "linear wrong features": (lambda L: L.nn.Linear(3, 2)(_x(L, 4, 5)), "5"),
    "linear int input": (lambda L: L.nn.Linear(3, 2)(_targets(L, [[1, 2, 3]])), "int64"),
    "linear float64 input, float32 weights": (lambda L: L.nn.Linear(3, 2)(_x(L, 4, 3, dtype=L.float64)), "float64"),
    "linear negative size": (lambda L: L.nn.Linear(-1, 2), "-1"),
    "linear float size": (lambda L: L.nn.Linear(3.5, 2), "3.5"),
    "linear 0-d input": (lambda L: L.nn.Linear(3, 2)(L.tensor(1.0)), "0-d"),
    "linear empty batch": (lambda L: _fixed(L.nn.Linear(3, 2))(_x(L, 0, 3)), None),
    "linear 3-d input": (lambda L: _fixed(L.nn.Linear(3, 2))(_x(L, 2, 4, 3)), None),
    # recurrent layers
    "lstm wrong input size": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 4)), "input_size"),
    "lstm 4-d input": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 1, 3)), "(5, 2, 1, 3)"),
    "lstm 1-d input": (lambda L: L.nn.LSTM(3, 4)(_x(L, 3)), "(3,)"),
    "lstm float64 input": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 3, dtype=L.float64)), "float64"),
    "lstm int input": (lambda L: L.nn.LSTM(3, 4)(_targets(L, np.ones((5, 2, 3), np.int64))), "int64"),
    "lstm hidden wrong batch": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 3), (L.zeros(1, 3, 4), L.zeros(1, 3, 4))),
                                "3"),
    "lstm hidden wrong layers": (lambda L: L.nn.LSTM(3, 4, 2)(_x(L, 5, 2, 3), (L.zeros(1, 2, 4), L.zeros(1, 2, 4))),
                                 "(2, 2, 4)"),
    "lstm cell state wrong size": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 3), (L.zeros(1, 2, 4), L.zeros(1, 2, 5))),
                                   "5"),
    "lstm hidden as one tensor": (lambda L: L.nn.LSTM(3, 4)(_x(L, 5, 2, 3), L.zeros(1, 2, 4)), "tuple"),
    "gru hidden as a tuple": (lambda L: L.nn.GRU(3, 4)(_x(L, 5, 2, 3), (L.zeros(1, 2, 4), L.zeros(1, 2, 4))),
                              "tuple"),
    "rnn hidden_size 0": (lambda L: L.nn.RNN(3, 0), "hidden_size"),
    "lstm num_layers 0": (lambda L: L.nn.LSTM(3, 4, num_layers=0), "num_layers"),
    "gru dropout 1.5": (lambda L: L.nn.GRU(3, 4, 2, dropout=1.5), "dropout"),
    "rnn unknown nonlinearity": (lambda L: L.nn.RNN(3, 4, nonlinearity="sigmoid"), "sigmoid"),
    "lstm empty batch": (lambda L: _fixed(L.nn.LSTM(3, 4, batch_first=True))(_x(L, 0, 5, 3)), None),
    "gru unbatched": (lambda L: _fixed(L.nn.GRU(3, 4))(_x(L, 5, 3)), None),
    "lstm zero steps": (lambda L: L.nn.LSTM(3, 4)(_x(L, 0, 2, 3)), "0"),
    # cells
    "lstmcell wrong input size": (lambda L: L.nn.LSTMCell(3, 4)(_x(L, 2, 5)), "input_size"),
    "lstmcell 3-d input": (lambda L: L.nn.LSTMCell(3, 4)(_x(L, 2, 1, 3)), "3"),
    "lstmcell hidden wrong batch": (lambda L: L.nn.LSTMCell(3, 4)(_x(L, 2, 3), (L.zeros(3, 4), L.zeros(3, 4))), "3"),
    "grucell hidden wrong size": (lambda L: L.nn.GRUCell(3, 4)(_x(L, 2, 3), L.zeros(2, 5)), "5"),
    "rnncell int input": (lambda L: L.nn.RNNCell(3, 4)(_targets(L, [[1, 2, 3]])), "int64"),
    "lstmcell unbatched": (lambda L: _fixed(L.nn.LSTMCell(3, 4))(_x(L, 3)), None),
    "grucell empty batch": (lambda L: _fixed(L.nn.GRUCell(3, 4))(_x(L, 0, 3)), None),
    # BatchNorm1d
    "batchnorm wrong features": (lambda L: L.nn.BatchNorm1d(3)(_x(L, 4, 5)), "5"),
    "batchnorm one value per channel": (lambda L: L.nn.BatchNorm1d(3)(_x(L, 1, 3)), "more than 1 value"),
    "batchnorm 4-d input": (lambda L: L.nn.BatchNorm1d(3)(_x(L, 2, 3, 4, 5)), "4"),
    "batchnorm 1-d input": (lambda L: L.nn.BatchNorm1d(3)(_x(L, 3)), "1"),
    "batchnorm eval batch of one": (lambda L: L.nn.BatchNorm1d(3).eval()(_x(L, 1, 3)), None),
    "batchnorm 3-d input": (lambda L: L.nn.BatchNorm1d(3)(_x(L, 2, 3, 4)), None),
    # Embedding
    "embedding float indices": (lambda L: L.nn.Embedding(10, 3)(_x(L, 2)), "float32"),
    "embedding index too large": (lambda L: L.nn.Embedding(10, 3)(_targets(L, [1, 10])), "10"),
    "embedding negative index": (lambda L: L.nn.Embedding(10, 3)(_targets(L, [-1])), "-1"),
    "embedding padding_idx out of range": (lambda L: L.nn.Embedding(10, 3, padding_idx=10), "padding_idx"),
    "embedding empty indices": (lambda L: _fixed(L.nn.Embedding(10, 3))(_targets(L, np.zeros((0, 4), np.int64))),
                                None),
    "embedding int32 indices": (lambda L: _fixed(L.nn.Embedding(10, 3))(_targets(L, [1, 9], L.int32)), None),
    # Dropout
    "dropout p 1.5": (lambda L: L.nn.Dropout(1.5), "1.5"),
    "dropout p -0.1": (lambda L: L.nn.Dropout(-0.1), "-0.1"),
    "functional dropout p 2": (lambda L: L.F.dropout(_x(L, 3), 2.0), "2.0"),
    "dropout p 1 zeros everything": (lambda L: L.nn.Dropout(1.0)(_x(L, 4, 3)), None),
    "dropout eval is identity": (lambda L: L.nn.Dropout(0.5).eval()(_x(L, 4, 3)), None),
    "dropout empty": (lambda L: L.nn.Dropout(0.5)(_x(L, 0, 3)), None),
    # LayerNorm
    "layernorm wrong shape": (lambda L: L.nn.LayerNorm(4)(_x(L, 2, 3)), "(4,)"),
    "layernorm int input": (lambda L: L.nn.LayerNorm(3)(_targets(L, [[1, 2, 3]])), "int64"),
    "layernorm empty batch": (lambda L: L.nn.LayerNorm(4)(_x(L, 0, 4)), None),
    "layernorm two dims": (lambda L: _fixed(L.nn.LayerNorm((2, 3)))(_x(L, 4, 2, 3)), None),
}

F_CE = "cross_entropy"
LOSS_CASES = {
    # cross_entropy
    "ce batch mismatch": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2, 3])), "(4,)"),
    "ce target too large": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 5, 1])), "5"),
    "ce negative target": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, -1, 1])), "-1"),
    "ce ignore_index -1": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, -1, 1]), ignore_index=-1),
                           None),
    "ce every target ignored": (lambda L: L.F.cross_entropy(_logits(L, 2, 5), _targets(L, [-100, -100])), None),
    "ce bad reduction": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]), reduction="avg"),
                         "avg"),
    "ce label smoothing": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]),
                                                       label_smoothing=0.1), None),
    "ce label smoothing with ignore_index": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]),
                                                                         ignore_index=1, label_smoothing=0.2), None),
    "ce label smoothing 1.5": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]),
                                                           label_smoothing=1.5), "1.5"),
    "ce float target of the wrong shape": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _x(L, 3)), "(3, 5)"),
    "ce probability targets": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _logits(L, 3, 5).softmax(1)), None),
    "ce int32 target": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2], L.int32)), "int32"),
    "ce unbatched": (lambda L: L.F.cross_entropy(_logits(L, 5), _targets(L, 3)), None),
    "ce k-dim": (lambda L: L.F.cross_entropy(_logits(L, 2, 5, 3), _targets(L, [[0, 4, 2], [1, 1, 3]])), None),
    "ce k-dim target wrong shape": (lambda L: L.F.cross_entropy(_logits(L, 2, 5, 3), _targets(L, [[0, 4], [1, 1]])),
                                    "(2, 2)"),
    "ce weight wrong size": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]), weight=_x(L, 4)),
                             "4"),
    "ce weighted": (lambda L: L.F.cross_entropy(_logits(L, 3, 5), _targets(L, [0, 1, 2]), weight=_x(L, 5).abs()),
                    None),
    "ce empty batch sum": (lambda L: L.F.cross_entropy(_logits(L, 0, 5), _targets(L, np.zeros(0, np.int64)),
                                                       reduction="sum"), None),
    "ce 0-d input": (lambda L: L.F.cross_entropy(L.tensor(1.0), _targets(L, 0)), "0-d"),
    # nll_loss
    "nll target too large": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _targets(L, [0, 7, 1])), "7"),
    "nll float target": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _x(L, 3)), "float32"),
    "nll batch mismatch": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _targets(L, [0, 1])), "(2,)"),
    "nll reduction none": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _targets(L, [0, 4, 1]), reduction="none"), None),
    "nll bad reduction": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _targets(L, [0, 4, 1]), reduction="total"),
                          "total"),
    "nll ignore_index": (lambda L: L.F.nll_loss(_logits(L, 3, 5), _targets(L, [0, 4, 1]), ignore_index=4), None),
    "nll 3-d input": (lambda L: L.F.nll_loss(_logits(L, 2, 5, 3), _targets(L, [[0, 4, 2], [1, 1, 3]])), None),
    # mse_loss
    "mse shapes that do not broadcast": (lambda L: L.F.mse_loss(_x(L, 3), _x(L, 4)), "(4,)"),
    "mse int inputs": (lambda L: L.F.mse_loss(_targets(L, [1, 2]), _targets(L, [1, 3])), "int64"),
    "mse bad reduction": (lambda L: L.F.mse_loss(_x(L, 3), _x(L, 3), reduction="avg"), "avg"),
    "mse empty": (lambda L: L.F.mse_loss(_x(L, 0), _x(L, 0)), None),
    "mse empty sum": (lambda L: L.F.mse_loss(_x(L, 0, 2), _x(L, 0, 2), reduction="sum"), None),
    "mse float64 target": (lambda L: L.F.mse_loss(_x(L, 3), _x(L, 3, dtype=L.float64)), None),
    # binary_cross_entropy
    "bce target shape mismatch": (lambda L: L.F.binary_cross_entropy(_probabilities(L, 3), _probabilities(L, 3, 1)),
                                  "(3, 1)"),
    "bce input above 1": (lambda L: L.F.binary_cross_entropy(_x(L, 3) + 2, _probabilities(L, 3)), "between 0 and 1"),
    "bce int target": (lambda L: L.F.binary_cross_entropy(_probabilities(L, 3), _targets(L, [0, 1, 1])), "int64"),
    "bce bad reduction": (lambda L: L.F.binary_cross_entropy(_probabilities(L, 3), _probabilities(L, 3),
                                                             reduction="avg"), "avg"),
    "bce weighted": (lambda L: L.F.binary_cross_entropy(_probabilities(L, 2, 3), _probabilities(L, 2, 3),
                                                        weight=_x(L, 3).abs()), None),
    "bce empty": (lambda L: L.F.binary_cross_entropy(_probabilities(L, 0), _probabilities(L, 0)), None),
    # binary_cross_entropy_with_logits
    "bce logits shape mismatch": (lambda L: L.F.binary_cross_entropy_with_logits(_x(L, 3), _probabilities(L, 3, 1)),
                                  "(3, 1)"),
    "bce logits pos_weight broadcast": (lambda L: L.F.binary_cross_entropy_with_logits(
        _x(L, 2, 3), _probabilities(L, 2, 3), pos_weight=_x(L, 3).abs()), None),
    "bce logits pos_weight wrong size": (lambda L: L.F.binary_cross_entropy_with_logits(
        _x(L, 2, 3), _probabilities(L, 2, 3), pos_weight=_x(L, 4)), "4"),
    "bce logits bad reduction": (lambda L: L.F.binary_cross_entropy_with_logits(_x(L, 3), _probabilities(L, 3),
                                                                                reduction="avg"), "avg"),
    "bce logits empty sum": (lambda L: L.F.binary_cross_entropy_with_logits(_x(L, 0), _probabilities(L, 0),
                                                                            reduction="sum"), None),
}

CASES = {**LAYER_CASES, **LOSS_CASES}
# torch's AssertionError (Embedding's padding_idx check) is an implementation detail: a ValueError here;
# where torch crashes on an attribute (GRU given a tuple state), any package error is clearer
KIND_OVERRIDES = {AssertionError: ValueError, NotImplementedError: RuntimeError, AttributeError: Exception}
KINDS = (IndexError, ValueError, TypeError, RuntimeError, Exception)
# torch raises ValueError for an RNN's input of the wrong dtype but RuntimeError for Linear's: a DTypeError
# (TypeError and RuntimeError) for both here
# torch indexes a lone tensor given as LSTM's (h_0, c_0) and fails with an IndexError; ours says it wants a tuple
CASE_KINDS = {"lstm float64 input": DTypeError, "lstm int input": DTypeError, "lstm hidden as one tensor": DTypeError}
def _outcome(fn, lib):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return fn(lib), None, caught
        except Exception as e:  # noqa: BLE001 (any failure is an outcome to compare)
            return None, e, caught


def _kind(error):
    kind = KIND_OVERRIDES.get(type(error), type(error))
    return next(k for k in KINDS if issubclass(kind, k))


def _arrays(value):
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    return [value.detach().numpy()]


@needs_torch
@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_gets_torchs_answer_or_a_clear_package_error(case):
    fn, words = CASES[case]
    theirs, their_error, their_warnings = _outcome(fn, _lib(torch))
    ours, our_error, _ = _outcome(fn, _lib(tg))
    if their_error is not None:
        assert words is not None, f"torch raised {their_error!r}: the case must say what our message names"
        assert our_error is not None, f"torch raised {type(their_error).__name__}: {their_error}; we returned {ours}"
        assert isinstance(our_error, TinyGradRNNError), f"{type(our_error).__name__}: {our_error}"
        assert isinstance(our_error, CASE_KINDS.get(case) or _kind(their_error)), (
            f"torch: {type(their_error).__name__}: {their_error}; ours: {type(our_error).__name__}: {our_error}")
        assert words in str(our_error), f"{words!r} not in {our_error}"
        return
    assert words is None, f"torch answered {theirs}"
    if our_error is not None:
        raise our_error
    assert not their_warnings or "dropout" in case, [str(w.message) for w in their_warnings]
    ours_arrays, their_arrays = _arrays(ours), _arrays(theirs)
    assert len(ours_arrays) == len(their_arrays)
    for a, b in zip(ours_arrays, their_arrays):
        assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("make, call", [
    (lambda: tg.nn.Linear(3, 2), lambda m, x: m(x)),
    (lambda: tg.nn.LSTM(3, 4), lambda m, x: m(x.reshape(1, 2, 3))),
    (lambda: tg.nn.LSTMCell(3, 4), lambda m, x: m(x)),
    (lambda: tg.nn.LayerNorm(3), lambda m, x: m(x)),
], ids=["linear", "lstm", "lstmcell", "layernorm"])
def test_a_module_on_one_device_and_input_on_another_is_a_device_error(make, call):
    x = tg.ones(2, 3, device="stub")
    with pytest.raises(DeviceError, match="cpu") as caught:
        call(make(), x)
    assert "stub" in str(caught.value)


@pytest.mark.parametrize("loss, target", [
    (tg.nn.functional.cross_entropy, lambda: tg.tensor([0, 2])),
    (tg.nn.functional.nll_loss, lambda: tg.tensor([0, 2])),
    (tg.nn.functional.mse_loss, lambda: tg.zeros(2, 3)),
    (tg.nn.functional.binary_cross_entropy_with_logits, lambda: tg.zeros(2, 3)),
], ids=["cross_entropy", "nll_loss", "mse_loss", "bce_with_logits"])
def test_a_loss_with_input_and_target_on_different_devices_is_a_device_error(loss, target):
    with pytest.raises(DeviceError, match="stub"):
        loss(tg.ones(2, 3, device="stub"), target())
