"""Stateless forms of the layers and losses (torch.nn.functional).

Everything here is composed from differentiable Tensor ops, so gradients come from
ops.py; the only raw-array work is on constants (masks, class coefficients, running
statistics), always through the tensor's own array module.
"""
from __future__ import annotations

from .. import backend
from .. import ops as P
from ..backend import get_array_module
from ..errors import DeviceError, DTypeError, InvalidValueError, OutOfRangeError, ShapeError
from .mode import is_fused
from ..tensor import Tensor, apply, get_xp, one_hot, where  # noqa: F401  (one_hot re-exported, as in torch)

_REDUCTIONS = ("none", "mean", "sum")
_BCE_EPSILON = 9.999999960041972e-13  # torch's 1e-12 floor of x (1 - x), which it keeps as a float32


def check_tensor(value, who, name="input"):
    """Layers and losses take Tensors, as torch's do: a (nested) list would otherwise fail deeper down
    with an AttributeError that names neither the layer nor the argument."""
    if not isinstance(value, Tensor):
        raise DTypeError(f"{who}: argument '{name}' must be a Tensor, not {type(value).__name__}")
    return value


# ---- layers ---------------------------------------------------------------------------

def linear(x, weight, bias=None):
    """Applies y = x @ weight.T + bias.

    Args:
        x: `(*, in_features)`.
        weight: `(out_features, in_features)`.
        bias: `(out_features,)`, or None.

    Returns:
        `(*, out_features)`.

    Examples:
        >>> F.linear(tg.randn(4, 3), tg.randn(2, 3), tg.zeros(2)).shape
        (4, 2)
    """
    if weight.ndim == 2 and x.ndim >= 1 and (bias is None or bias.shape == weight.shape[:1]):
        return apply(P.Linear, x, weight, *(() if bias is None else (bias,)))
    out = x @ weight.T  # other shapes: broadcasting as the two ops do, and their errors
    return out if bias is None else out + bias


def dropout(x, p=0.5, training=True):
    """Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p).

    Args:
        x: any shape.
        p: the probability of zeroing, in [0, 1]. Default 0.5.
        training: when False, x is returned unchanged. Default True.

    Returns:
        x's shape.
    """
    if not 0.0 <= p <= 1.0:
        raise InvalidValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = backend.host_rng().random(x.shape) >= p
    mask = Tensor(keep.astype(x.dtype) / (1.0 - p), dtype=x.dtype, device=x.device)
    return x * mask


def relu(input):
    return input.relu()


def tanh(input):
    return input.tanh()


def sigmoid(input):
    return input.sigmoid()


def logsigmoid(input):
    """log(sigmoid(x)), stable for any x, with the finite gradient sigmoid(-x) at +-inf."""
    return apply(P.LogSigmoid, input)


def gelu(input, approximate="none"):
    """x Phi(x), Phi the standard normal CDF (through erf); approximate='tanh' is torch's tanh form."""
    if approximate == "none":
        return input * 0.5 * (1 + (input * _SQRT_HALF).erf())
    if approximate == "tanh":
        return input * 0.5 * (1 + ((input + 0.044715 * input * input * input) * _SQRT_TWO_OVER_PI).tanh())
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


_SQRT_HALF = 0.7071067811865476
_SQRT_TWO_OVER_PI = 0.7978845608028654


def softmax(input, dim):
    return input.softmax(dim)


def log_softmax(input, dim):
    return input.log_softmax(dim)


def embedding(input, weight, padding_idx=None):
    """Looks up rows of `weight` at integer indices.

    Repeated indices add their gradients; the row at padding_idx gets none.

    Args:
        input: `(*)` integer indices in [0, num_embeddings).
        weight: `(num_embeddings, embedding_dim)`.
        padding_idx: a row that gets no gradient, or None.

    Returns:
        `(*, embedding_dim)`.

    Examples:
        >>> F.embedding(tg.tensor([[1, 2], [0, 1]]), tg.randn(5, 3)).shape
        (2, 2, 3)
    """
    index = _index_tensor(input, weight, "embedding")
    count = weight.shape[0]
    if index.numel():
        low, high = int(index._data.min()), int(index._data.max())
        if low < 0 or high >= count:
            bad = low if low < 0 else high
            raise OutOfRangeError(f"embedding: index {bad} is out of range for a weight of {count} rows "
                             f"(valid indices 0..{count - 1}; input shape {index.shape})")
    rows = weight[index]
    if padding_idx is None:
        return rows
    is_padding = (index._data == padding_idx)[..., None]
    return where(is_padding, rows.detach(), rows)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation of `(N, C)` or `(N, C, L)`, per channel C.

    Args:
        input: `(N, C)` or `(N, C, L)`.
        running_mean: `(C,)` buffer, or None.
        running_var: `(C,)` buffer, or None.
        weight: `(C,)` scale, or None.
        bias: `(C,)` shift, or None.
        training: normalise with the batch statistics (biased variance) and blend them into the
            running buffers in place (unbiased variance, as torch does); otherwise normalise
            with the running buffers.
        momentum: the newest batch's weight in the running buffers. Default 0.1.
        eps: added to the variance. Default 1e-5.

    Returns:
        input's shape.
    """
    if input.ndim not in (2, 3):
        raise ShapeError(f"batch_norm: expected 2D or 3D input (N, C) or (N, C, L), got shape {input.shape}")
    if input.dtype.kind not in "fc":
        raise DTypeError(f"batch_norm: expects a floating point input, got {input.dtype} (cast it with .float())")
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and (not isinstance(t, Tensor) or t.shape != (input.shape[1],)):
            what = t.shape if isinstance(t, Tensor) else type(t).__name__
            raise ShapeError(f"batch_norm: {name} must be a tensor of shape ({input.shape[1]},) for an input of "
                             f"shape {input.shape}, got {what}")
    if not training and (running_mean is None or running_var is None):
        raise InvalidValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                                "(training=False); pass training=True to normalise by the batch")
    _check_parameter_dtypes("batch_norm", input, running_mean, running_var, weight, bias)
    channels = input.shape[1]
    axes = (0,) + tuple(range(2, input.ndim))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    if training:
        count = input.numel() // max(channels, 1)
        if count <= 1:
            raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input shape {input.shape}")
        if (weight is None) == (bias is None) and is_fused():  # one node (ops.BatchNorm)
            mean, var, centred = P.batch_stats(input._data, axes)
            _blend_stats(running_mean, running_var, mean, var, count, momentum)
            affine = () if weight is None else (weight, bias)
            return apply(P.BatchNorm, input, *affine, var=var, centred=centred, axes=axes, eps=float(eps))
        mean = input.mean(axes, keepdim=True)
        var = input.var(axes, keepdim=True, correction=0)
        _blend_stats(running_mean, running_var, mean._data, var._data, count, momentum)
    else:
        mean, var = running_mean.detach().reshape(shape), running_var.detach().reshape(shape)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the last `len(normalized_shape)` dims, with the biased variance.

    Args:
        input: `(*, *normalized_shape)`.
        normalized_shape: an int or a tuple, the trailing shape normalised over.
        weight: scale of `normalized_shape`, or None.
        bias: shift of `normalized_shape`, or None.
        eps: added to the variance. Default 1e-5.

    Returns:
        input's shape.
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or input.ndim < len(shape) or input.shape[input.ndim - len(shape):] != shape:
        raise ShapeError(f"layer_norm: input of shape {input.shape} does not end in normalized_shape {shape}")
    _check_parameter_dtypes("layer_norm", input, weight, bias)
    axes = tuple(range(input.ndim - len(shape), input.ndim))
    centred = input - input.mean(axes, keepdim=True)
    variance = (centred * centred).mean(axes, keepdim=True)
    out = centred / (variance + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _check_parameter_dtypes(op, input, *tensors):
    """A normalisation's parameters and buffers must have the input's dtype: torch refuses too, and
    promoting would quietly turn a float32 model float64."""
    dtype = input.dtype
    if any(t is not None and t.dtype != dtype for t in tensors):  # (dtype objects: str() costs 10 us each)
        mixed = {str(t.dtype) for t in tensors if t is not None} - {str(dtype)}
        raise DTypeError(f"{op}: input is {dtype} but its parameters/buffers are "
                         f"{', '.join(sorted(mixed))}; cast the input or the module (.double()/.float())")


def _blend_stats(running_mean, running_var, mean, var, count, momentum):
    """The batch's mean and (unbiased, as torch) variance arrays into the running buffers given."""
    if running_mean is not None:
        _blend(running_mean, mean.reshape(-1), momentum)
    if running_var is not None:
        _blend(running_var, var.reshape(-1) * (count / (count - 1)), momentum)


def _blend(buffer, batch_value, momentum):
    """buffer <- (1 - momentum) * buffer + momentum * batch_value, outside the graph."""
    buffer._data = (1.0 - momentum) * buffer._data + momentum * batch_value.astype(buffer.dtype, copy=False)


# ---- losses ---------------------------------------------------------------------------

def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits against class indices or class probabilities.

    label_smoothing e mixes the one-hot target with the uniform 1/C, as torch does:
    (1 - e) * nll + e * (mean over classes of -weight_c * log p_c).

    Args:
        input: logits `(N, C)`, `(N, C, d1, ...)` or `(C,)`, a floating dtype.
        target: class indices `(N,)`, `(N, d1, ...)` or `()` (int64 or uint8), or class
            probabilities of input's shape.
        weight: `(C,)` per-class weights, or None.
        ignore_index: a target value that contributes nothing. Default -100.
        reduction: "none", "mean" or "sum". Default "mean". The mean divides by the summed
            weights of the counted targets.
        label_smoothing: e in [0, 1]. Default 0.

    Returns:
        A scalar; with reduction="none" the target's shape.

    Examples:
        >>> logits = tg.randn(20, 4, 5)                      # (T, B, classes)
        >>> targets = tg.randint(0, 5, size=(20, 4))
        >>> F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1)).shape
        ()
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise InvalidValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if check_tensor(input, "cross_entropy").ndim == 0:
        raise ShapeError("cross_entropy: input must have 1 dim (C,) or more (N, C, ...), got a 0-d tensor")
    if input.dtype.kind != "f":
        raise DTypeError(f"cross_entropy: input (logits) must be a floating dtype, got {input.dtype} "
                         f"(shape {input.shape}); cast it with .float()")
    log_probs = input.log_softmax(_class_dim(input))
    target = _as_tensor(target, input)
    if target.dtype.kind == "f" and target.shape == input.shape:
        return _soft_target_loss(log_probs, target, weight, reduction, label_smoothing)
    return _nll(log_probs, target, weight, ignore_index, reduction, label_smoothing, "cross_entropy")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities at class indices.

    Args:
        input: log-probabilities `(N, C)`, `(N, C, d1, ...)` or `(C,)`.
        target: class indices `(N,)`, `(N, d1, ...)` or `()` (int64 or uint8).
        weight: `(C,)` per-class weights, or None.
        ignore_index: a target value that contributes nothing. Default -100.
        reduction: "none", "mean" or "sum". Default "mean".

    Returns:
        A scalar; with reduction="none" the target's shape.
    """
    if check_tensor(input, "nll_loss").ndim == 0:
        raise ShapeError("nll_loss: input must have 1 dim (C,) or more (N, C, ...), got a 0-d tensor")
    return _nll(input, _as_tensor(target, input), weight, ignore_index, reduction, 0.0, "nll_loss")


def _nll(log_probs, target, weight, ignore_index, reduction, smoothing, op):
    _check_reduction(reduction, op)
    if target.dtype.name not in _INDEX_TARGET_DTYPES:  # torch's: int32 indices are refused too
        raise DTypeError(f"{op}: target must hold class indices as int64 (or uint8), got {target.dtype} "
                         f"(target shape {target.shape}, input shape {log_probs.shape}); cast it with .long()")
    classes = log_probs.shape[_class_dim(log_probs)]
    expected = log_probs.shape[:1] + log_probs.shape[2:] if log_probs.ndim > 1 else ()
    if target.shape != expected:
        raise ShapeError(f"{op}: input of shape {log_probs.shape} needs a target of shape {expected}, "
                         f"got {target.shape}")
    xp = get_xp(target)
    kept = (target._data != ignore_index).reshape(target.shape)  # an array even for a 0-d target
    safe = xp.where(kept, target._data, 0)
    _check_classes(safe, kept, classes, ignore_index, op)
    class_weight = _class_weights(weight, classes, log_probs, op)
    # O(targets), not O(targets x classes): pick each target's log-probability (forward a gather,
    # backward a scatter into the gradient) instead of multiplying by a dense one-hot matrix.
    per_class = _classes_last(log_probs)
    leading = xp.meshgrid(*[xp.arange(n) for n in safe.shape], indexing="ij", sparse=True) if safe.ndim else ()
    picked_weight = class_weight[safe.reshape(-1)].reshape(safe.shape) * kept
    losses = -(per_class[(*leading, safe)] * Tensor._make((1.0 - smoothing) * picked_weight, False, None))
    if smoothing:
        # smoothing spreads e/C over every class: the class-weighted sum of all log-probabilities
        spread = (smoothing / classes) * class_weight
        losses = losses - (per_class @ Tensor._make(spread, False, None)) * Tensor._make(kept.astype(
            log_probs.dtype), False, None)
    if reduction != "mean":
        return losses if reduction == "none" else losses.sum()
    # torch's mean: divide by the summed weights of the non-ignored targets.
    denominator = float(picked_weight.sum())
    if denominator == 0.0:
        return losses.sum() + float("nan")  # torch: NaN value, zero gradient
    return losses.sum() / denominator


def _soft_target_loss(log_probs, target, weight, reduction, smoothing):
    """Class-probability targets: -sum_c weight_c * log p_c * ((1 - e) t_c + e / C); mean over elements."""
    _check_reduction(reduction, "cross_entropy")
    classes = log_probs.shape[_class_dim(log_probs)]
    probabilities = _classes_last(_same_dtype(target, log_probs)) * (1.0 - smoothing) + smoothing / classes
    weighted = probabilities * Tensor._make(_class_weights(weight, classes, log_probs, "cross_entropy"), False, None)
    return _reduce(-(_classes_last(log_probs) * weighted).sum(-1), reduction)


@backend.quietly  # at x = +inf, t = 1 the value is 0 * inf = nan, as torch's, without numpy's warning
def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid and binary cross entropy on logits in one, stable for any logit.

    torch's formula: (1 - t) * x - (1 + (pos_weight - 1) * t) * logsigmoid(x). At x = ±inf the
    gradient is finite (sigmoid(x) - t, weighted) while the value may be nan, both as in torch.

    Args:
        input: logits, any shape.
        target: input's shape, floating, in [0, 1].
        weight: broadcastable to input's shape, or None.
        reduction: "none", "mean" or "sum". Default "mean".
        pos_weight: weights of the positive term, broadcastable to the target's shape, or None.

    Returns:
        A scalar; with reduction="none" input's shape.
    """
    target = _float_target(input, target, "binary_cross_entropy_with_logits")
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    log_weight = 1.0 if pos_weight is None else (_same_dtype(pos_weight, input) - 1.0) * target + 1.0
    losses = (1.0 - target) * input - log_weight * logsigmoid(input)
    return _reduce(_weighted(losses, weight, input), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross entropy, -w (t log x + (1 - t) log(1 - x)), for probabilities x in [0, 1];
    each log clamped at -100.

    The gradient is torch's formula rather than the derivative of the clamped value:
    w (x - t) / max(x (1 - x), 1e-12) for x, w (log(1 - x) - log x) for t (logs clamped
    here too, where torch gives ±inf), so saturated probabilities train as in torch.

    Args:
        input: probabilities, any shape.
        target: input's shape, floating, in [0, 1].
        weight: broadcastable to input's shape, or None.
        reduction: "none", "mean" or "sum". Default "mean".

    Returns:
        A scalar; with reduction="none" input's shape.
    """
    target = _float_target(input, target, "binary_cross_entropy")
    _check_reduction(reduction, "binary_cross_entropy")
    xp = get_xp(input)
    x, t = input._data, target._data
    for name, values in (("input", x), ("target", t)):  # torch checks both: a label of 2 is no probability
        if values.size and not bool(xp.all((values >= 0) & (values <= 1))):
            raise InvalidValueError(f"binary_cross_entropy: all elements of {name} should be between 0 and 1 "
                             f"({name} shape {input.shape})")
    log_x, log_1mx = _clamped_log(x), _clamped_log(1 - x)
    losses = -(t * log_x + (1 - t) * log_1mx)
    grad_input = (x - t) / xp.maximum(x * (1 - x), _BCE_EPSILON)
    grad_target = log_1mx - log_x
    if weight is not None:
        w = _same_dtype(weight, input)._data
        losses, grad_input, grad_target = losses * w, grad_input * w, grad_target * w
    out = Tensor._make(losses, False, None) + _with_gradient(input, grad_input) + _with_gradient(target, grad_target)
    return _reduce(out, reduction)


def mse_loss(input, target, reduction="mean"):
    """Squared error, (input - target) ** 2 elementwise, then reduced.

    Mixed float dtypes give the wider one, as torch's (a float64 target makes a float64 loss).

    Args:
        input: any shape.
        target: input's shape (no broadcasting).
        reduction: "none", "mean" or "sum". Default "mean".

    Returns:
        A scalar; with reduction="none" input's shape.

    Examples:
        >>> float(F.mse_loss(tg.tensor([1.0, 2.0]), tg.tensor([1.0, 4.0]), reduction="sum"))
        4.0
    """
    target = _float_target(input, target, "mse_loss", cast=False)
    _check_reduction(reduction, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction)


# ---- helpers ----------------------------------------------------------------------------

def _as_tensor(value, like):
    """A Tensor on like's device: lists and host arrays are moved there; a Tensor elsewhere is an error."""
    if not isinstance(value, Tensor):
        return Tensor(value, device=like.device)
    if value.device != like.device:
        raise DeviceError(f"a tensor of shape {value.shape} on {value.device} was combined with an input "
                          f"of shape {like.shape} on {like.device}; move it with .to('{like.device}')")
    return value


def _index_tensor(index, weight, op):
    index = _as_tensor(index, weight)
    if index.dtype.kind not in "iu":
        raise DTypeError(f"{op}: indices must be an integer dtype, got {index.dtype} (shape {index.shape})")
    return index


def _float_target(input, target, op, cast=True):
    check_tensor(input, op)
    target = _as_tensor(target, input)
    if target.dtype.kind != "f":
        raise DTypeError(f"{op}: target must be a floating dtype, got {target.dtype} "
                         f"(target shape {target.shape}, input shape {input.shape})")
    if target.shape != input.shape:
        raise ShapeError(f"{op}: target shape {target.shape} must equal input shape {input.shape}")
    return _same_dtype(target, input) if cast else target


_INDEX_TARGET_DTYPES = ("int64", "uint8")


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise InvalidValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def _weighted(losses, weight, like):
    return losses if weight is None else losses * _same_dtype(weight, like)


def _same_dtype(value, like):
    """A weight as a Tensor of like's dtype, so a float64 weight does not promote a float32 loss."""
    value = _as_tensor(value, like)
    return value if value.dtype == like.dtype else value.to(dtype=like.dtype)


def _class_dim(input):
    return 1 if input.ndim > 1 else 0


def _classes_last(t):
    """(N, C, d1, ...) -> (N, d1, ..., C), so one class axis sits last for every input rank."""
    if t.ndim <= 2:
        return t
    return t.permute(0, *range(2, t.ndim), 1)


def _class_weights(weight, classes, like, op):
    """Per-class weights as a raw (C,) array of like's dtype; ones when weight is None."""
    if weight is None:
        return get_xp(like).ones(classes, dtype=like.dtype)
    weight = _as_tensor(weight, like)
    if weight.shape != (classes,):
        raise ShapeError(f"{op}: weight of shape {weight.shape} must have one entry per class, "
                         f"shape ({classes},)")
    return weight._data.astype(like.dtype, copy=False)


def _check_classes(safe, kept, classes, ignore_index, op):
    bad = kept & ((safe < 0) | (safe >= classes))
    if bool(bad.any()):
        first = int(safe[bad].reshape(-1)[0])
        raise OutOfRangeError(f"{op}: target {first} is out of bounds for {classes} classes "
                         f"(valid 0..{classes - 1}, or ignore_index={ignore_index})")


def _clamped_log(x):
    """max(log(x), -100) on a raw array, without ever evaluating log(0)."""
    xp = get_array_module(x)
    positive = x > 0
    return xp.maximum(xp.where(positive, xp.log(xp.where(positive, x, 1)), -100), -100).astype(x.dtype, copy=False)


def _with_gradient(t, gradient):
    """Zero in value, `gradient` (a raw array) as its derivative with respect to t."""
    if not t.requires_grad:
        return 0.0
    return (t - t.detach()) * Tensor._make(gradient, False, None)
