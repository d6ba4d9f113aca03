"""Names a PyTorch user reaches for: modules, padding, dtype aliases and torch.cuda's questions,
each equal to torch on identical input."""
import numpy as np
import pytest
from oracle import needs_torch, torch

import tinygrad_rnn as tg
from tinygrad_rnn.nn.utils.rnn import pad_sequence


def _pair(shape, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape)
    return tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)


@needs_torch
@pytest.mark.parametrize("make, shape", [
    (lambda lib: lib.nn.LogSoftmax(dim=1), (3, 4)),
    (lambda lib: lib.nn.LogSoftmax(dim=-1), (2, 3, 4)),
    (lambda lib: lib.nn.Flatten(), (2, 3, 4)),
    (lambda lib: lib.nn.Flatten(0, 1), (2, 3, 4)),
], ids=["logsoftmax-1", "logsoftmax-last", "flatten", "flatten-0-1"])
def test_modules_match_torch(make, shape):
    (x, xt), weights = _pair(shape), np.random.default_rng(1).standard_normal(shape).reshape(-1)
    out, ref = make(tg)(x), make(torch)(xt)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-12)
    (out.reshape(-1) * tg.tensor(weights)).sum().backward()
    (ref.reshape(-1) * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence_matches_torch(batch_first, padding_side):
    pairs = [_pair((n, 2), seed=n) for n in (3, 1, 4)]
    out = pad_sequence([p[0] for p in pairs], batch_first, -1.0, padding_side)
    ref = torch.nn.utils.rnn.pad_sequence([p[1] for p in pairs], batch_first, -1.0, padding_side)
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    weights = np.arange(ref.numel(), dtype=np.float64).reshape(tuple(ref.shape))
    (out * tg.tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_pad_sequence_refuses_mismatched_sequences():
    with pytest.raises(tg.ShapeError, match="after their first dim"):
        pad_sequence([tg.ones(2, 3), tg.ones(2, 4)])


@needs_torch
def test_dtype_aliases_are_torchs():
    for name in ("float", "double", "half", "long", "int", "float32", "float64", "int64"):
        assert np.dtype(getattr(tg, name)).name == str(getattr(torch, name)).removeprefix("torch."), name


def test_cuda_questions_answer_without_a_gpu_or_cupy():
    assert tg.cuda.is_available() == tg.is_available("cuda")
    if not tg.cuda.is_available():
        assert tg.cuda.device_count() == 0


@needs_torch
@pytest.mark.parametrize("args", [("cpu",), ("cuda",), ("cuda", 1), ("cuda:2",)])
def test_device_objects_read_like_torchs(args):
    ours, theirs = tg.device(*args), torch.device(*args)
    assert (ours.type, ours.index) == (theirs.type, theirs.index)
    assert repr(ours) == repr(theirs) and str(ours) == str(theirs)


def test_device_objects_work_where_names_do():
    cpu = tg.device("cpu")
    assert tg.ones(2).to(cpu).device == "cpu" and tg.zeros(2, device=cpu).device == cpu
    with pytest.raises(tg.DeviceError, match="unknown device"):
        tg.device("tpu")


def test_torch_import_paths_and_out_of_scope_names_load():
    from tinygrad_rnn.nn.modules.container import ModuleList
    from tinygrad_rnn.nn.modules.loss import CrossEntropyLoss
    from tinygrad_rnn.nn.modules.rnn import LSTM

    assert LSTM is tg.nn.LSTM and ModuleList is tg.nn.ModuleList and CrossEntropyLoss is tg.nn.CrossEntropyLoss

    class Model(tg.nn.Transformer):  # defining it works, as in programs that never build one
        pass

    with pytest.raises(NotImplementedError, match=r"nn\.Transformer is not implemented"):
        Model()
    with pytest.raises(NotImplementedError, match="state_dict"):
        tg.onnx.export(tg.nn.Linear(1, 1), tg.ones(1), "model.onnx")


def test_thread_count_is_remembered():
    before = tg.get_num_threads()
    try:
        tg.set_num_threads(1)
        assert tg.get_num_threads() == 1
    finally:
        tg.set_num_threads(before)
