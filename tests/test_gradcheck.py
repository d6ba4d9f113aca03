"""Every op's backward against float64 central differences, on every backend.

One row per case: (registry ops it covers, function, input shapes, input domain).
`test_every_registered_op_has_a_row` fails when an op is added to ops.py without a row.
"""
import sys

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import ops, sequence

POS = "positive"   # inputs drawn in [0.5, 2]: log, sqrt, division, fractional powers
ANY = "normal"     # standard normal


def ramp(like, *shape):
    """Distinct weights, so a backward that permutes or misplaces gradients is caught."""
    return tg.arange(1.0, 1.0 + np.prod(shape), dtype=like.dtype, device=like.device).reshape(*shape)


def _transposed(w):
    """What a sequence layer hands a fused step as w_hh_t: a contiguous copy of w.T (made from the
    perturbed w at every call, as the layer makes it at every forward)."""
    return tg.backend.get_array_module(w._data).ascontiguousarray(w._data.T)


def row(covers, fn, shapes, domain=ANY, id=None):
    return pytest.param(covers, fn, shapes, domain, id=id)


def written(a, index, value):
    """a copy of a with a[index] = value: the setitem node's gradient to both."""
    out = a * 1.0
    out[index] = value
    return out


def _product(tensors):
    """h * c of a cell's state: both halves of a fused step's output reach the check."""
    return tensors[0] * tensors[1]


def in_place_on_view(a, b):
    """An in-place op through a view writes into the base: the base's graph records it."""
    out = a * 1.0
    out[1].mul_(b)
    out.T[0] += b[:3]
    return out * ramp(a, 3, 4)


ROWS = [
    row({"add"}, lambda a, b: a + b, [(3, 4), (4,)], id="add-broadcast"),
    row({"add"}, lambda a, b: a + b, [(2, 1, 3), (4, 1)], id="add-broadcast-both"),
    row({"add"}, lambda a: a + a + 1.5, [(3,)], id="add-reuse"),
    row({"sub"}, lambda a, b: a - b, [(2, 3), (2, 1)], id="sub"),
    row({"sub"}, lambda a: 2.0 - a, [(3,)], id="rsub"),
    row({"mul"}, lambda a, b: a * b, [(3, 1), (1, 4)], id="mul-outer"),
    row({"mul"}, lambda a: a * a * a, [(2, 3)], id="mul-reuse"),
    row({"div"}, lambda a, b: a / b, [(3, 4), (4,)], POS, id="div"),
    row({"div"}, lambda a: 1.0 / a, [(3,)], POS, id="rdiv"),
    row({"pow"}, lambda a, b: a ** b, [(2, 3), (3,)], POS, id="pow-tensor"),
    row({"pow"}, lambda a: 2.0 ** a, [(4,)], id="rpow"),
    row({"powscalar"}, lambda a: a ** 3, [(2, 3)], id="pow3"),
    row({"powscalar"}, lambda a: a ** 0.5 + a ** -1.5, [(4,)], POS, id="pow-frac"),
    row({"maximum"}, lambda a, b: a.maximum(b), [(3, 4), (4,)], id="maximum"),
    row({"minimum"}, lambda a, b: a.minimum(b), [(3, 1), (3, 4)], id="minimum"),
    row({"where"}, lambda a, b: tg.where(a > 0, a, b), [(3, 4), (4,)], id="where"),
    row({"neg"}, lambda a: -a, [(2, 2)], id="neg"),
    row({"exp"}, lambda a: a.exp(), [(2, 3)], id="exp"),
    row({"log"}, lambda a: a.log(), [(2, 3)], POS, id="log"),
    row({"tanh"}, lambda a: a.tanh(), [(2, 3)], id="tanh"),
    row({"sigmoid"}, lambda a: a.sigmoid(), [(2, 3)], id="sigmoid"),
    row({"logsigmoid"}, lambda a: tg.nn.functional.logsigmoid(a * 4), [(2, 3)], id="logsigmoid"),
    row({"relu"}, lambda a: a.relu(), [(3, 4)], id="relu"),
    row({"sin"}, lambda a: a.sin(), [(2, 3)], id="sin"),
    row({"cos"}, lambda a: a.cos(), [(2, 3)], id="cos"),
    row({"erf"}, lambda a: (a * 2).erf(), [(3, 4)], id="erf"),
    row({"sqrt"}, lambda a: a.sqrt(), [(2, 3)], POS, id="sqrt"),
    row({"abs"}, lambda a: a.abs(), [(2, 3)], id="abs"),
    row({"clip"}, lambda a: a.clip(-0.5, 0.7), [(3, 4)], id="clip"),
    row({"clip"}, lambda a: a.clamp(min=0.1), [(5,)], id="clamp-min"),
    row({"cast"}, lambda a: ops.Cast.apply(a, dtype=np.float64) * 2, [(3,)], id="cast"),
    row({"sum"}, lambda a: a.sum(), [(2, 3)], id="sum-all"),
    row({"sum"}, lambda a: a.sum(1), [(2, 3, 4)], id="sum-axis"),
    row({"sum"}, lambda a: a.sum((0, 2), keepdim=True), [(2, 3, 4)], id="sum-axes-keepdim"),
    row({"max"}, lambda a: a.amax(1), [(3, 4)], id="amax-axis"),
    row({"max"}, lambda a: a.max(), [(3, 4)], id="max-all"),
    row({"max"}, lambda a: a.max(dim=0, keepdim=True).values, [(3, 4)], id="max-dim-values"),
    row({"min"}, lambda a: a.amin((0, 1)), [(2, 3, 2)], id="amin-axes"),
    row({"reshape"}, lambda a: a.reshape(6, 2) * ramp(a, 6, 2),
        [(3, 4)], id="reshape"),
    row({"permute"}, lambda a: a.permute(2, 0, 1) * ramp(a, 4, 2, 3),
        [(2, 3, 4)], id="permute"),
    row({"permute"}, lambda a: a.T @ a, [(3, 2)], id="transpose-T"),
    row({"expand"}, lambda a: a.expand(2, 3, 4) * ramp(a, 2, 3, 4),
        [(3, 1)], id="expand"),
    row({"getitem"}, lambda a: a[1:, ::2], [(3, 4)], id="getitem-basic"),
    row({"getitem"}, lambda a: a[[0, 2, 0, 0]] * 1.5, [(3, 2)], id="getitem-repeated-rows"),
    row({"getitem"}, lambda a: a[[1, 1, 0], [0, 0, 3]], [(2, 4)], id="getitem-pairs"),
    row({"getitem"}, lambda a: a[..., None, 1], [(2, 3)], id="getitem-ellipsis-newaxis"),
    row({"getitem"}, lambda a: a.gather(1, [[0, 0], [2, 1]]), [(2, 3)], id="gather"),
    row({"getitem"}, lambda a: a.split(2, dim=1)[1] * a.chunk(2, dim=1)[0], [(2, 4)], id="split-chunk"),
    row({"cat"}, lambda a, b: tg.cat([a, b, a], dim=1), [(2, 3), (2, 1)], id="cat"),
    row({"stack"}, lambda a, b: tg.stack([a, b], dim=1) * ramp(a, 2, 2, 3), [(2, 3), (2, 3)], id="stack"),
    row({"stack"}, lambda a, b: tg.stack([a, b, a], dim=-1) * ramp(a, 2, 3, 3), [(2, 3), (2, 3)], id="stack-last"),
    row({"linear"}, lambda x, w, b: tg.nn.functional.linear(x, w, b) * ramp(x, 3, 2), [(3, 4), (2, 4), (2,)],
        id="linear"),
    row({"linear"}, lambda x, w: tg.nn.functional.linear(x, w) * ramp(x, 2, 3, 2), [(2, 3, 4), (2, 4)],
        id="linear-3d-no-bias"),
    row({"linear"}, lambda x, w, b: tg.nn.functional.linear(x, w, b) * ramp(x, 2), [(4,), (2, 4), (2,)],
        id="linear-1d"),
    row({"matmul"}, lambda a, b: a @ b, [(3, 4), (4, 2)], id="matmul"),
    row({"batchnorm"}, lambda x, w, b: tg.nn.functional.batch_norm(x, None, None, w, b, training=True)
        * ramp(x, 5, 3), [(5, 3), (3,), (3,)], id="batchnorm"),
    row({"batchnorm"}, lambda x, w, b: tg.nn.functional.batch_norm(x, None, None, w, b, training=True)
        * ramp(x, 4, 3, 2), [(4, 3, 2), (3,), (3,)], id="batchnorm-3d"),
    row({"batchnorm"}, lambda x: tg.nn.functional.batch_norm(x, None, None, training=True) * ramp(x, 6, 2),
        [(6, 2)], id="batchnorm-no-affine"),
    row({"matmul"}, lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], id="matmul-batched-broadcast"),
    row({"matmul"}, lambda a, b: (a @ b) * ramp(a, 3, 2, 5), [(3, 2, 4), (4, 5)], id="matmul-stack-times-matrix"),
    row({"matmul", "permute"}, lambda a, b: (a.permute(1, 0, 2) @ b) * ramp(a, 2, 3, 5), [(3, 2, 4), (4, 5)],
        id="matmul-strided-stack-times-matrix"),
    row({"matmul"}, lambda a, b: (a @ b) * ramp(a, 2, 3, 5), [(2, 3, 4), (2, 4, 5)], id="matmul-stacks"),
    row({"matmul"}, lambda a, b: a @ b, [(4,), (4, 2)], id="matmul-vector-left"),
    row({"matmul"}, lambda a, b: a @ b, [(2, 3, 4), (4,)], id="matmul-vector-right"),
    # fused cell steps: x_proj, h (, c), w_hh (, b_hh); the LSTM's (2, B, H) output weighted per entry.
    # With step=t, x_proj holds every step (T, B, G*H) and w_hh_t is the layer's contiguous w_hh.T
    row({"lstmstep"}, lambda x, h, c, w: ops.LSTMStep.apply(x, h, c, w) * ramp(x, 2, 2, 3),
        [(2, 12), (2, 3), (2, 3), (12, 3)], id="lstmstep"),
    row({"lstmstep"}, lambda x, h, c, w: ops.LSTMStep.apply(x, h, c, w, step=1, w_hh_t=_transposed(w)) *
        ramp(x, 2, 2, 3), [(3, 2, 12), (2, 3), (2, 3), (12, 3)], id="lstmstep-row-of-sequence"),
    row({"grustep"}, lambda x, h, w, b: ops.GRUStep.apply(x, h, w, b) * ramp(x, 2, 3),
        [(2, 9), (2, 3), (9, 3), (9,)], id="grustep"),
    row({"grustep"}, lambda x, h, w: ops.GRUStep.apply(x, h, w) * ramp(x, 2, 3), [(2, 9), (2, 3), (9, 3)],
        id="grustep-no-bias"),
    row({"grustep"}, lambda x, h, w, b: ops.GRUStep.apply(x, h, w, b, step=-1, w_hh_t=_transposed(w)) *
        ramp(x, 2, 3), [(2, 2, 9), (2, 3), (9, 3), (9,)], id="grustep-row-of-sequence"),
    row({"rnnstep"}, lambda x, h, w, b: ops.RNNStep.apply(x, h, w, b) * ramp(x, 2, 3),
        [(2, 3), (2, 3), (3, 3), (3,)], id="rnnstep-tanh"),
    row({"rnnstep"}, lambda x, h, w: ops.RNNStep.apply(x, h, w, nonlinearity="relu") * ramp(x, 2, 3),
        [(2, 3), (2, 3), (3, 3)], id="rnnstep-relu"),
    row({"rnnstep"}, lambda x, h, w: ops.RNNStep.apply(x, h, w, step=0, w_hh_t=_transposed(w)) * ramp(x, 2, 3),
        [(4, 2, 3), (2, 3), (3, 3)], id="rnnstep-row-of-sequence"),
    # a layer's whole loop in one node (tinygrad_rnn.sequence), forward and reverse in time
    row({"lstmsequence"}, lambda x, h, c, w: sequence.LSTMSequence.apply(x, h, c, w) * ramp(x, 5, 2, 2),
        [(3, 2, 8), (2, 2), (2, 2), (8, 2)], id="lstmsequence"),
    row({"lstmsequence", "sequenceoutput"}, lambda x, h, c, w: sequence.SequenceOutput.apply(
        sequence.LSTMSequence.apply(x, h, c, w, w_hh_t=_transposed(w), reverse=True), start=0, steps=3) *
        ramp(x, 3, 2, 2),
        [(3, 2, 8), (2, 2), (2, 2), (8, 2)], id="lstmsequence-reverse-output"),
    row({"grusequence"}, lambda x, h, w, b: sequence.GRUSequence.apply(x, h, w, b) * ramp(x, 4, 2, 2),
        [(3, 2, 6), (2, 2), (6, 2), (6,)], id="grusequence"),
    row({"grusequence", "sequenceoutput"}, lambda x, h, w: sequence.SequenceOutput.apply(
        sequence.GRUSequence.apply(x, h, w, reverse=True), start=0, steps=3) * ramp(x, 3, 2, 2),
        [(3, 2, 6), (2, 2), (6, 2)], id="grusequence-reverse-no-bias"),
    row({"rnnsequence"}, lambda x, h, w: sequence.RNNSequence.apply(x, h, w) * ramp(x, 4, 2, 2),
        [(3, 2, 2), (2, 2), (2, 2)], id="rnnsequence-tanh"),
    row({"rnnsequence"}, lambda x, h, w: sequence.RNNSequence.apply(x, h, w, nonlinearity="relu", reverse=True) *
        ramp(x, 4, 2, 2), [(3, 2, 2), (2, 2), (2, 2)], id="rnnsequence-relu-reverse"),
    row(set(), lambda x, h, c, w_ih, w_hh, b: _product(tg.nn.lstm_cell(x, (h, c), w_ih, w_hh, b, b)),
        [(2, 3), (2, 2), (2, 2), (8, 3), (8, 2), (8,)], id="lstm_cell-fused"),
    row({"clone"}, lambda a: a.clone() * ramp(a, 3, 4), [(3, 4)], id="clone"),
    row({"copyslices"}, lambda a, b: ops.CopySlices.apply(a, b, chain=((ops.GetItem, {"index": (slice(1, 3),)}),)),
        [(4, 3), (3,)], id="copyslices"),
    row({"copyslices"}, lambda a, b: written(a, (slice(None), [2, 0]), b), [(3, 4), (3, 1)], id="setitem-advanced"),
    row({"copyslices"}, lambda a, b: written(a, 1, b.tanh()) * ramp(a, 3, 4), [(3, 4), (4,)], id="setitem-row"),
    row({"copyslices"}, lambda a, b: in_place_on_view(a, b), [(3, 4), (4,)], id="mul_-on-view"),
    row(set(), lambda a, b: a.clone().mul_(b).add_(a, alpha=2).clamp_(-1, 1), [(3, 4), (4,)], id="in-place-chain"),
    # composites: built from the primitives above, checked end to end
    row(set(), lambda a: a.mean((0, 2)), [(2, 3, 4)], id="mean"),
    row(set(), lambda a: a.var(1), [(3, 4)], id="var"),
    row(set(), lambda a: a.std(correction=0), [(3, 4)], id="std-biased"),
    row(set(), lambda a: a.softmax(-1), [(2, 5)], id="softmax"),
    row({"logsoftmax"}, lambda a: a.log_softmax(0), [(3, 4)], id="log_softmax"),
    row({"logsoftmax"}, lambda a: a.log_softmax(-1) * ramp(a, 2, 3, 4), [(2, 3, 4)], id="log_softmax-last"),
    row(set(), lambda a: a.logsumexp((0, 1)), [(2, 3, 2)], id="logsumexp"),
    row(set(), lambda a, b: (a @ b).tanh().sigmoid() * a.sum(), [(2, 3), (3, 2)], id="chain-reuse"),
    row(set(), lambda a: a.repeat(2, 1, 3) * ramp(a, 2, 2, 9), [(2, 3)], id="repeat"),
    row(set(), lambda a: a.narrow(1, -3, 2) * ramp(a, 3, 2), [(3, 4)], id="narrow"),
    row(set(), lambda a: a.norm(dim=1) + a.norm(3, dim=0).sum() + tg.linalg.vector_norm(a, float("inf")),
        [(3, 4)], id="norm"),
    row(set(), lambda a: a.sort(1, descending=True).values * ramp(a, 3, 4), [(3, 4)], id="sort"),
    row(set(), lambda a: a.topk(2, dim=0).values * ramp(a, 2, 4), [(3, 4)], id="topk"),
    row(set(), lambda a, w, b: tg.nn.functional.layer_norm(a, (4,), w, b) * ramp(a, 3, 4),
        [(3, 4), (4,), (4,)], id="layer_norm"),
    row(set(), lambda a: tg.nn.functional.gelu(a) + tg.nn.functional.gelu(a, approximate="tanh"),
        [(3, 4)], id="gelu"),
]


def _inputs(shapes, domain, device):
    rng = np.random.default_rng(len(shapes) * 7 + sum(map(len, shapes)))
    out = []
    for shape in shapes:
        data = rng.uniform(0.5, 2.0, shape) if domain == POS else rng.standard_normal(shape)
        out.append(tg.tensor(data, dtype=np.float64, device=device, requires_grad=True))
    return out


@pytest.mark.parametrize("covers, fn, shapes, domain", ROWS)
def test_gradcheck(covers, fn, shapes, domain, device):
    assert tg.gradcheck(fn, _inputs(shapes, domain, device), atol=1e-6, rtol=1e-5)


def test_gradcheck_to_device(device):
    other = "stub:0" if device == "cpu" else "cpu"
    x = _inputs([(2, 3)], ANY, device)[0]
    assert tg.gradcheck(lambda a: (a.to(other) * 3.0).to(device).exp(), [x])


def test_every_registered_op_has_a_row():
    covered = set().union(*(p.values[0] for p in ROWS)) | {"todevice"}
    missing = set(ops.REGISTRY) - covered
    assert not missing, f"ops without a gradcheck row: {sorted(missing)}"


def test_gradcheck_catches_a_wrong_backward():
    class BadSquare(tg.Function):
        def forward(self, a):
            self.save_for_backward(a)
            return a * a

        def backward(self, g):
            return g * self.saved[0]  # should be 2*a

    x = tg.randn(3, dtype=np.float64, requires_grad=True)
    assert not tg.gradcheck(lambda a: BadSquare.apply(a), [x], raise_exception=False)
    with pytest.raises(AssertionError, match="differ"):
        tg.gradcheck(lambda a: BadSquare.apply(a), [x])


@pytest.mark.parametrize("covers, fn, shapes, domain", [r for r in ROWS if r.values[0] != {"cast"}])
def test_float32_stays_float32(covers, fn, shapes, domain):
    """numpy 2 promotion makes float64 easy to leak in; every op and its backward keep float32.
    (The cast row is left out: it changes dtype on purpose.)"""
    inputs = [tg.tensor(x.numpy().astype(np.float32), requires_grad=True) for x in _inputs(shapes, domain, "cpu")]
    out = fn(*inputs)
    assert out.dtype == np.float32
    out.sum().backward()
    for x in inputs:
        assert x.grad.dtype == np.float32


@pytest.mark.parametrize("covers, fn, shapes, domain", ROWS)
def test_ops_save_inputs_and_outputs_themselves_not_views_of_them(covers, fn, shapes, domain, monkeypatch):
    """The version check finds a saved input or output by identity (tensor._record_versions). An op
    that saved a view of one instead would escape it, and an in-place write would then silently
    change its gradient: every op here saves the arrays themselves, or arrays it made."""
    tensor_module = sys.modules["tinygrad_rnn.tensor"]
    record = tensor_module._record_versions

    def checked(ctx, inputs, out):
        for array in ctx.saved:
            if not isinstance(array, np.ndarray):
                continue
            tensors = (*inputs, out)
            if any(array is t._data for t in tensors):
                continue  # found by identity (views of one storage share the version counter)
            assert not any(np.shares_memory(array, t._data) for t in tensors), \
                f"{ctx.name} saved a view of an input or output, not the array itself"
        return record(ctx, inputs, out)

    monkeypatch.setattr(tensor_module, "_record_versions", checked)
    fn(*_inputs(shapes, domain, "cpu")).sum().backward()
