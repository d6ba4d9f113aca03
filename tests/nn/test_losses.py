"""Losses against torch.nn.functional and torch.nn loss modules: values and input gradients for
every reduction and option, stability at extreme logits, errors, and float64 gradchecks."""
import itertools

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn as nn
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn.errors import DTypeError, ShapeError
from oracle import needs_torch, torch

TF = None if torch is None else torch.nn.functional

TOL = {np.float64: 1e-10, np.float32: 1e-5}
REDUCTIONS = ["none", "mean", "sum"]


def _torch(value):
    return None if value is None else torch.tensor(value)


def compare(ours_fn, theirs_fn, input, target, dtype=np.float64, device="cpu", **options):
    """ours_fn(input, target, **options) vs theirs_fn on the same numbers: value and input gradient.
    Options that are arrays become tensors of each library."""
    input = input.astype(dtype)
    ours_x = tg.tensor(input, device=device, requires_grad=True)
    theirs_x = torch.tensor(input, requires_grad=True)
    ours_options = {k: tg.tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    theirs_options = {k: _torch(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    ours = ours_fn(ours_x, tg.tensor(target, device=device), **ours_options)
    theirs = theirs_fn(theirs_x, torch.tensor(target), **theirs_options)
    upstream = np.random.standard_normal(tuple(theirs.shape)).astype(dtype)
    ours.backward(upstream)
    theirs.backward(torch.tensor(upstream))
    assert ours.shape == tuple(theirs.shape) and ours.dtype == dtype
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=TOL[dtype], atol=TOL[dtype])
    return ours


def class_targets(shape, classes, ignore_index=None, rng=np.random):
    target = rng.randint(0, classes, size=shape)
    if ignore_index is not None and target.ndim:
        target[rng.random_sample(shape) < 0.3] = ignore_index
        target.reshape(-1)[0] = 1  # at least one counted target
    return target


LOGIT_SHAPES = [(6, 5), (3, 5, 4), (2, 5, 3, 2), (5,)]


def _target_shape(shape):
    return shape[:1] + shape[2:] if len(shape) > 1 else ()


# ---- cross entropy / nll ------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, ignore_index, label_smoothing",
                         list(itertools.product([False, True], [-100, 2, None], [0.0, 0.25])))
def test_cross_entropy_matches_torch(shape, reduction, weighted, ignore_index, label_smoothing):
    classes = shape[1] if len(shape) > 1 else shape[0]
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    if ignore_index is not None:
        options["ignore_index"] = ignore_index
    if weighted:
        options["weight"] = np.random.uniform(0.2, 2.0, classes)
    target = class_targets(_target_shape(shape), classes, ignore_index)
    logits = np.random.standard_normal(shape) * 3
    compare(F.cross_entropy, TF.cross_entropy, logits, target, **options)


@needs_torch
@pytest.mark.parametrize("shape", LOGIT_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, ignore_index", list(itertools.product([False, True], [-100, 3, None])))
def test_nll_loss_matches_torch(shape, reduction, weighted, ignore_index):
    classes = shape[1] if len(shape) > 1 else shape[0]
    options = dict(reduction=reduction)
    if ignore_index is not None:
        options["ignore_index"] = ignore_index
    if weighted:
        options["weight"] = np.random.uniform(0.2, 2.0, classes)
    target = class_targets(_target_shape(shape), classes, ignore_index)
    compare(F.nll_loss, TF.nll_loss, np.random.standard_normal(shape), target, **options)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_float32_with_weights_and_ignore(reduction, label_smoothing, device):
    target = class_targets((8, 3), 6, ignore_index=-100)
    compare(F.cross_entropy, TF.cross_entropy, np.random.standard_normal((8, 6, 3)), target, np.float32, device,
            weight=np.random.uniform(0.2, 2.0, 6).astype(np.float32), reduction=reduction,
            label_smoothing=label_smoothing)


@needs_torch
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, label_smoothing", list(itertools.product([False, True], [0.0, 0.2])))
def test_cross_entropy_probability_targets_match_torch(shape, reduction, weighted, label_smoothing):
    probabilities = torch.softmax(torch.randn(shape, dtype=torch.float64), 1).numpy()
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    if weighted:
        options["weight"] = np.random.uniform(0.2, 2.0, shape[1])
    compare(F.cross_entropy, TF.cross_entropy, np.random.standard_normal(shape), probabilities, **options)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, label_smoothing", [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_large_vocabulary_matches_torch(reduction, weighted, label_smoothing):
    """A language model's loss: 300 tokens over 16k classes, some ignored."""
    vocab = 16_000
    options = dict(reduction=reduction, label_smoothing=label_smoothing, ignore_index=7)
    if weighted:
        options["weight"] = np.random.uniform(0.2, 2.0, vocab)
    target = class_targets((300,), vocab, ignore_index=7)
    compare(F.cross_entropy, TF.cross_entropy, np.random.standard_normal((300, vocab)), target, **options)


@pytest.mark.parametrize("shape", [(300, 16_000), (4, 16_000, 75)])
def test_nll_loss_picks_targets_without_a_dense_one_hot(shape):
    """Besides the input itself, no node of the loss's graph holds (tokens x vocabulary) numbers:
    the loss is a gather of the target entries, O(tokens). (A permute, moving the class dim last,
    is a view: it holds no numbers of its own.)"""
    log_probs = tg.randn(*shape, requires_grad=True)
    loss = F.nll_loss(log_probs, tg.tensor(class_targets(_target_shape(shape), shape[1], ignore_index=-100)))
    sizes = [int(np.prod(node.shape)) for node in tg.autograd.walk(loss)
             if not node.is_leaf and node.op != "permute"]
    assert max(sizes) <= shape[0] * int(np.prod(shape[2:])), sizes
    loss.backward()
    assert log_probs.grad.shape == shape


@needs_torch
def test_all_targets_ignored_gives_nan_mean_and_zero_gradient_like_torch():
    target = np.full(4, -100)
    for fn, theirs in ((F.cross_entropy, TF.cross_entropy), (F.nll_loss, TF.nll_loss)):
        loss = compare(fn, theirs, np.random.standard_normal((4, 3)), target)
        assert np.isnan(loss.item())


@needs_torch
def test_extreme_logits_are_stable_and_match_torch():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 1e4]], np.float32)
    target = np.array([1, 2, 0, 0])
    for label_smoothing in (0.0, 0.1):
        loss = compare(F.cross_entropy, TF.cross_entropy, logits, target, np.float32,
                       label_smoothing=label_smoothing)
        assert np.isfinite(loss.item())
    binary_target = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], np.float32)
    for pos_weight in (None, np.array([0.5, 2.0, 3.0], np.float32)):
        loss = compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, logits,
                       binary_target, np.float32, reduction="none", pos_weight=pos_weight)
        assert np.isfinite(loss.numpy()).all()
    x = tg.tensor(logits, requires_grad=True)
    tg.set_detect_anomaly(True)  # any NaN/Inf in forward or backward raises
    (F.cross_entropy(x, tg.tensor(target)) + F.binary_cross_entropy_with_logits(x, tg.tensor(binary_target))).backward()
    assert np.isfinite(x.grad.numpy()).all()


# ---- binary cross entropy, mse ----------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, (3,), (4, 3)])
@pytest.mark.parametrize("pos_weight", [None, (3,)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_with_logits_matches_torch(reduction, weight, pos_weight, dtype):
    options = dict(reduction=reduction)
    if weight is not None:
        options["weight"] = np.random.uniform(0.2, 2.0, weight).astype(dtype)
    if pos_weight is not None:
        options["pos_weight"] = np.random.uniform(0.2, 3.0, pos_weight).astype(dtype)
    logits = np.random.standard_normal((4, 3)) * 4
    logits[0, 0] = 0.0  # the kink of |x| in the textbook formula: the gradient must still be exact
    target = np.random.uniform(0, 1, (4, 3)).astype(dtype)
    compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, logits, target, dtype,
            **options)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, (3,), (4, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bce_matches_torch_including_saturated_probabilities(reduction, weight, dtype):
    options = dict(reduction=reduction)
    if weight is not None:
        options["weight"] = np.random.uniform(0.2, 2.0, weight).astype(dtype)
    probabilities = np.random.uniform(0.05, 0.95, (4, 3))
    target = np.random.uniform(0, 1, (4, 3)).astype(dtype)
    # exact 0 and 1 (log clamped at -100) and a tiny probability (torch clamps the gradient's denominator)
    probabilities[0] = [0.0, 1.0, 1e-14]
    target[0] = [1.0, 0.0, 1.0]
    probabilities[1, :2], target[1, :2] = [0.0, 1.0], [0.0, 1.0]
    loss = compare(F.binary_cross_entropy, TF.binary_cross_entropy, probabilities, target, dtype, **options)
    assert np.isfinite(loss.numpy()).all()


@needs_torch
def test_bce_target_gradient_matches_torch_inside_the_interval():
    probabilities, target = np.random.uniform(0.05, 0.95, (3, 4)), np.random.uniform(0, 1, (3, 4))
    ours_t, theirs_t = tg.tensor(target, requires_grad=True), torch.tensor(target, requires_grad=True)
    F.binary_cross_entropy(tg.tensor(probabilities), ours_t).backward()
    TF.binary_cross_entropy(torch.tensor(probabilities), theirs_t).backward()
    np.testing.assert_allclose(ours_t.grad.numpy(), theirs_t.grad.numpy(), rtol=1e-10, atol=1e-10)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mse_matches_torch(reduction, dtype, device):
    compare(F.mse_loss, TF.mse_loss, np.random.standard_normal((3, 4, 2)),
            np.random.standard_normal((3, 4, 2)).astype(dtype), dtype, device, reduction=reduction)


# ---- modules ----------------------------------------------------------------------------------

MODULES = [
    ("CrossEntropyLoss", dict(weight=(5,), ignore_index=1, label_smoothing=0.1), "classes"),
    ("CrossEntropyLoss", dict(reduction="sum"), "classes"),
    ("NLLLoss", dict(weight=(5,), reduction="none"), "classes"),
    ("BCEWithLogitsLoss", dict(weight=(5,), pos_weight=(5,)), "binary"),
    ("BCELoss", dict(weight=(5,), reduction="sum"), "probabilities"),
    ("MSELoss", dict(reduction="none"), "real"),
]


@needs_torch
@pytest.mark.parametrize("name, options, kind", MODULES)
def test_loss_modules_match_torch_modules(name, options, kind, device):
    arrays = {k: np.random.uniform(0.5, 2.0, v) for k, v in options.items() if isinstance(v, tuple)}
    ours = getattr(nn, name)(**{**options, **{k: tg.tensor(v) for k, v in arrays.items()}}).to(device)
    theirs = getattr(torch.nn, name)(**{**options, **{k: torch.tensor(v) for k, v in arrays.items()}})
    assert list(ours.state_dict()) == list(theirs.state_dict()) == list(arrays)
    assert repr(ours) == repr(theirs)
    input = np.random.uniform(0.05, 0.95, (4, 5)) if kind == "probabilities" else np.random.standard_normal((4, 5))
    target = {"classes": class_targets((4,), 5), "binary": np.random.randint(0, 2, (4, 5)).astype(np.float64),
              "probabilities": np.random.uniform(0, 1, (4, 5)), "real": np.random.standard_normal((4, 5))}[kind]
    compare(lambda x, t: ours(x, t), lambda x, t: theirs(x, t), input, target, device=device)


def test_legacy_size_average_and_reduce_map_like_torch():
    with pytest.warns(UserWarning):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert nn.CrossEntropyLoss(reduce=False).reduction == "none"


# ---- errors -------------------------------------------------------------------------------------

def test_loss_errors_name_shapes_and_dtypes():
    logits = tg.randn(4, 3)
    with pytest.raises(DTypeError, match=r"int64 \(or uint8\), got float32"):
        F.cross_entropy(logits, tg.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(DTypeError, match="int64 \\(or uint8\\), got bool"):
        F.nll_loss(logits, tg.tensor([True, False, True, True]))
    with pytest.raises(ShapeError, match=r"target of shape \(4,\), got \(3,\)"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2]))
    with pytest.raises(IndexError, match=r"target 3 is out of bounds for 3 classes"):
        F.cross_entropy(logits, tg.tensor([0, 1, 3, 1]))
    with pytest.raises(ShapeError, match=r"weight of shape \(4,\)"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2, 1]), weight=tg.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(logits, logits, reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2, 1]), label_smoothing=1.5)
    with pytest.raises(ShapeError, match=r"target shape \(4, 1\) must equal input shape \(4, 3\)"):
        F.binary_cross_entropy_with_logits(logits, tg.zeros(4, 1))
    with pytest.raises(ShapeError, match="must equal input shape"):
        F.mse_loss(logits, tg.zeros(3))
    with pytest.raises(DTypeError, match="floating dtype, got int64"):
        F.binary_cross_entropy(logits.sigmoid(), tg.tensor(np.zeros((4, 3), np.int64)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(logits.sigmoid() * 2, tg.zeros(4, 3))


def test_float32_stays_float32_with_float64_weights():
    logits = tg.randn(4, 3, requires_grad=True)
    weight = np.array([1.0, 2.0, 3.0])  # float64 on purpose
    for loss in (F.cross_entropy(logits, tg.tensor([0, 1, 2, 1]), weight=weight),
                 F.binary_cross_entropy_with_logits(logits, tg.zeros(4, 3), weight=weight, pos_weight=weight),
                 F.binary_cross_entropy(logits.sigmoid(), tg.zeros(4, 3), weight=weight)):
        assert loss.dtype == np.float32
        loss.backward()
        assert logits.grad.dtype == np.float32


# ---- gradcheck ------------------------------------------------------------------------------------

def _gradcheck(fn, *shapes, positive=False):
    rng = np.random.default_rng(1)
    inputs = [tg.tensor(rng.uniform(0.1, 0.9, s) if positive else rng.standard_normal(s), requires_grad=True)
              for s in shapes]
    assert tg.gradcheck(fn, inputs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_losses(reduction):
    target = tg.tensor([2, -100, 0])
    spatial_target = tg.tensor([[0, 3], [1, 1]])
    weight = tg.tensor([0.5, 1.0, 2.0, 1.5])
    _gradcheck(lambda x: F.cross_entropy(x, target, weight=weight, reduction=reduction, label_smoothing=0.2), (3, 4))
    _gradcheck(lambda x: F.cross_entropy(x, spatial_target, reduction=reduction), (2, 4, 2))
    _gradcheck(lambda x: F.nll_loss(x, target, weight=weight, reduction=reduction), (3, 4))
    _gradcheck(lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction=reduction,
                                                               pos_weight=tg.tensor([1.0, 2.0, 0.5])), (2, 3), (2, 3))
    _gradcheck(lambda x, t: F.binary_cross_entropy(x, t, weight=tg.tensor([1.0, 2.0, 0.5]), reduction=reduction),
               (2, 3), (2, 3), positive=True)
    _gradcheck(lambda x, t: F.mse_loss(x, t, reduction=reduction), (2, 3), (2, 3))
