"""Every primitive op, forward and backward side by side, on raw backend arrays.

This is the one place derivatives live. Backwards may return gradients of the
output's (broadcast) shape: the engine sums them back to each input's shape.
Backwards never write into the incoming gradient. Adding an op = one class here,
one method on Tensor, one row in tests/test_gradcheck.py (a test fails without it).
"""
from __future__ import annotations

from . import buffers
from .autograd import Function, MatmulGrad, SparseGrad
from .backend import device_of, get_array_module, on_host, quietly, to_device
from .errors import DTypeError, ShapeError
from .jitswitch import jit_kernel

REGISTRY = {}  # name -> Function subclass; the gradcheck suite demands a row for each


def register(cls):
    REGISTRY[cls.__name__.lower()] = cls
    return cls


def quiet(cls):
    """An op whose forward or backward can make inf or nan from finite inputs: both run without
    numpy's RuntimeWarnings, as torch's do (backend.quietly)."""
    cls.forward, cls.backward = quietly(cls.forward), quietly(cls.backward)
    return cls


# ---- elementwise binary -------------------------------------------------------

@register
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


@register
class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


@register
class Mul(Function):
    def forward(self, a, b):
        # Each gradient needs the other operand: keep only what a wanted gradient uses, so that
        # writing the other one in place later is no error (as in torch).
        grad_a, grad_b = self.parents  # parents[i] is None: input i needs no gradient
        self.save_for_backward(a if grad_b is not None else None, b if grad_a is not None else None)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return None if b is None else g * b, None if a is None else g * a


@register
@quiet
class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a if self.parents[1] is not None else None, b)
        return a / b

    def backward(self, g):
        a, b = self.saved
        ga = g / b if self.needs_input_grad[0] else None
        gb = -g * a / (b * b) if self.needs_input_grad[1] else None
        return ga, gb


@register
@quiet
class Pow(Function):
    """a ** b for two tensors; the gradient to b needs log(a), so it is only made when asked for."""

    def forward(self, a, b):
        out = a ** b
        grad_b = self.parents[1]
        self.save_for_backward(a, b, out if grad_b is not None else None)  # both gradients read b (as torch's)
        return out

    def backward(self, g):
        a, b, out = self.saved
        xp = get_array_module(a)
        ga = _pow_grad_base(g, a, b) if self.needs_input_grad[0] else None
        # torch's zero where a == 0 and b >= 0: the limit of b -> a ** b there, not 0 * log(0) = nan
        gb = xp.where((a == 0) & (b >= 0), 0, g * out * xp.log(a)) if self.needs_input_grad[1] else None
        return ga, gb


def _pow_grad_base(g, a, exponent):
    """d(a ** p)/da = p a ** (p - 1), and 0 where p == 0 (torch's; the formula gives 0 * inf = nan at a = 0)."""
    return get_array_module(g).where(exponent == 0, 0, g * exponent * a ** (exponent - 1))


@register
class Maximum(Function):
    """Ties share the gradient equally, as in torch."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a).maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        return _split_by_mask(g, a > b, a == b)


@register
class Minimum(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return get_array_module(a).minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        return _split_by_mask(g, a < b, a == b)


def _split_by_mask(g, first_wins, tie):
    share = first_wins + 0.5 * tie  # 1 where a is chosen, 1/2 on ties, 0 where b is
    share = share.astype(g.dtype)
    return g * share, g * (1 - share)


@register
class Where(Function):
    """where(condition, a, b); the condition is a constant bool array, not an input."""

    def forward(self, a, b, condition):
        self.save_for_backward(condition)
        return get_array_module(a).where(condition, a, b)

    def backward(self, g):
        (condition,) = self.saved
        zero = g.dtype.type(0)
        xp = get_array_module(g)
        return xp.where(condition, g, zero), xp.where(condition, zero, g)


# ---- elementwise unary ----------------------------------------------------------

@register
class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


@register
@quiet
class PowScalar(Function):
    """a ** p for a constant exponent p."""

    def forward(self, a, exponent):
        self.exponent = exponent
        self.save_for_backward(a)
        return a ** exponent

    def backward(self, g):
        (a,) = self.saved
        return _pow_grad_base(g, a, self.exponent)


@register
@quiet
class Exp(Function):
    def forward(self, a):
        out = get_array_module(a).exp(a)
        self.save_for_backward(out)
        return out

    def backward(self, g):
        return g * self.saved[0]


@register
@quiet
class Log(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return get_array_module(a).log(a)

    def backward(self, g):
        return g / self.saved[0]


@register
class Tanh(Function):
    def forward(self, a):
        out = get_array_module(a).tanh(a)
        self.save_for_backward(out)
        return out

    def backward(self, g):
        out = self.saved[0]
        return g * (1 - out * out)


@register
class Sin(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return get_array_module(a).sin(a)

    def backward(self, g):
        return g * get_array_module(g).cos(self.saved[0])


@register
class Cos(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return get_array_module(a).cos(a)

    def backward(self, g):
        return -g * get_array_module(g).sin(self.saved[0])


@register
@quiet
class Erf(Function):
    """The error function (numpy has none: see _erf); d erf(a)/da = 2/sqrt(pi) exp(-a^2)."""

    def forward(self, a):
        self.save_for_backward(a)
        return _erf(a).astype(a.dtype, copy=False)

    def backward(self, g):
        a = self.saved[0]
        return g * (_TWO_OVER_SQRT_PI * get_array_module(a).exp(-a * a)).astype(g.dtype, copy=False)


_TWO_OVER_SQRT_PI = 1.1283791670955126
_ONE_OVER_SQRT_PI = 0.5641895835477563
# W. J. Cody's rational Chebyshev approximations (CALERF, Math. Comp. 1969), accurate to about
# 1e-16 in float64 (tests/test_torch_api.py checks < 1e-14 against math.erf on a dense grid):
# erf(x) = x A(x^2)/B(x^2) for |x| <= 0.46875; erfc(x) = exp(-x^2) C(x)/D(x) for |x| <= 4;
# erfc(x) = exp(-x^2)/x (1/sqrt(pi) - P(1/x^2)/(x^2 Q(1/x^2))) beyond. Highest degree first.
_ERF_A = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
          3.77485237685302021e02, 3.20937758913846947e03)
_ERF_B = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERF_C = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
          2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03,
          1.23033935479799725e03)
_ERF_D = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
          3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_ERF_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
          1.60837851487422766e-2, 6.58749161529837803e-4)
_ERF_Q = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
          6.05183413124413191e-2, 2.33520497626869185e-3)


def _polyval(coefficients, x):
    out = coefficients[0]
    for c in coefficients[1:]:
        out = out * x + c
    return out


def _erf(a):
    """erf in float64 on any backend (only the array module's own functions), all three of Cody's
    ranges computed everywhere and then selected: branch-free, as arrays need."""
    xp = get_array_module(a)
    x = a.astype(xp.float64)
    y = xp.abs(x)
    x_near = xp.clip(x, -0.46875, 0.46875)
    small = x_near * x_near
    near = x_near * _polyval(_ERF_A, small) / _polyval(_ERF_B, small)
    y_mid = xp.clip(y, 0.46875, 4.0)
    y_far = xp.clip(y, 4.0, 30.0)  # erfc underflows to 0 well before 30: keeps 1/y^2 and exp tame
    inverse = 1.0 / (y_far * y_far)
    mid = _polyval(_ERF_C, y_mid) / _polyval(_ERF_D, y_mid)
    far = (_ONE_OVER_SQRT_PI - inverse * _polyval(_ERF_P, inverse) / _polyval(_ERF_Q, inverse)) / y_far
    tail = xp.where(y <= 4.0, mid, far)
    # exp(-y^2) as exp(-r^2) exp(-(y - r)(y + r)) with r = y rounded down to 1/16: exp(-y^2) alone
    # loses the low bits of y^2 (Cody's split)
    y_tail = xp.where(y <= 4.0, y_mid, y_far)
    rounded = xp.trunc(y_tail * 16.0) / 16.0
    erfc = xp.exp(-rounded * rounded) * xp.exp(-(y_tail - rounded) * (y_tail + rounded)) * tail
    return xp.where(y <= 0.46875, near, xp.sign(x) * (1.0 - erfc))


@register
@quiet
class Sigmoid(Function):
    def forward(self, a):
        # torch's 1 / (1 + exp(-a)): exact on both sides (tanh(a / 2) / 2 + 1 / 2 cancels for a < 0:
        # sigmoid(-20) came out 0). exp(-a) overflows to inf below about -88 in float32, giving 0, as torch.
        xp = get_array_module(a)
        out = 1 / (1 + xp.exp(-a))
        self.save_for_backward(out)
        return out

    def backward(self, g):
        out = self.saved[0]
        return g * out * (1 - out)


@register
class LogSigmoid(Function):
    """log(sigmoid(a)) as torch computes it, min(a, 0) - log1p(exp(-|a|)): no overflow, and a finite
    gradient sigmoid(-a) at a = +-inf, where log(sigmoid(a)) would give nan."""

    def forward(self, a):
        xp = get_array_module(a)
        tail = xp.exp(-xp.abs(a))
        self.save_for_backward(a, tail)
        return xp.minimum(a, 0) - xp.log1p(tail)

    def backward(self, g):
        a, tail = self.saved
        small = tail / (1 + tail)  # sigmoid(-|a|), without cancellation
        return g * get_array_module(g).where(a < 0, 1 - small, small)


@register
class Relu(Function):
    def forward(self, a):
        self.save_for_backward(a > 0)
        return get_array_module(a).maximum(a, a.dtype.type(0))

    def backward(self, g):
        return g * self.saved[0]


@register
@quiet
class Sqrt(Function):
    def forward(self, a):
        out = get_array_module(a).sqrt(a)
        self.save_for_backward(out)
        return out

    def backward(self, g):
        return g / (2 * self.saved[0])


@register
class Abs(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return get_array_module(a).abs(a)

    def backward(self, g):
        return g * get_array_module(g).sign(self.saved[0])


@register
class Clip(Function):
    """clamp(a, low, high): gradient passes where low <= a <= high, as in torch."""

    def forward(self, a, low=None, high=None):
        xp = get_array_module(a)
        inside = xp.ones(a.shape, dtype=bool)
        if low is not None:
            inside &= a >= low
        if high is not None:
            inside &= a <= high
        self.save_for_backward(inside)
        return xp.clip(a, low, high).astype(a.dtype, copy=False)

    def backward(self, g):
        return g * self.saved[0]


@register
class Clone(Function):
    """A copy that stays in the graph (torch's clone): the gradient passes through unchanged."""

    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


@register
class Cast(Function):
    def forward(self, a, dtype):
        self.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.in_dtype)


@register
class ToDevice(Function):
    def forward(self, a, device):
        self.in_device = device_of(a)
        return to_device(a, device)

    def backward(self, g):
        return to_device(g, self.in_device)


# ---- reductions -------------------------------------------------------------------

def _keepdims_shape(shape, axis):
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else n for i, n in enumerate(shape))


@register
class Sum(Function):
    def forward(self, a, axis=None, keepdims=False):
        self.in_shape, self.axis = a.shape, None if keepdims else axis  # axis: the ones to put back
        return a.sum(axis, None, None, keepdims)

    def backward(self, g):
        # A filled copy, not broadcast_to: numpy's broadcast_to costs ~2us whatever the size.
        out = get_array_module(g).empty(self.in_shape, dtype=g.dtype)
        # a full sum's 0-d gradient and a keepdims one broadcast as they are
        out[...] = g if self.axis is None else g.reshape(_keepdims_shape(self.in_shape, self.axis))
        return out


class _Extreme(Function):
    """max/min over axes; tied extremes share the gradient equally (torch's amax/amin)."""

    reduce = None

    def forward(self, a, axis=None, keepdims=False):
        if a.size == 0 and (axis is None or any(a.shape[i] == 0 for i in axis)):
            raise ShapeError(f"{self.name}: reduction over an empty tensor of shape {a.shape}")
        out = getattr(a, self.reduce)(axis=axis, keepdims=True)
        self.axis = axis
        if not keepdims:
            out = out.reshape(tuple(n for i, n in enumerate(a.shape) if axis is not None and i not in axis))
        self.save_for_backward(a, out)  # the output itself, not a view of it: the engine tracks its version
        return out

    def backward(self, g):
        a, out = self.saved
        shape = _keepdims_shape(a.shape, self.axis)
        hit = a == out.reshape(shape)
        count = hit.sum(axis=self.axis, keepdims=True)
        return g.reshape(shape) * hit / count.astype(g.dtype)


@register
class Max(_Extreme):
    reduce = "max"


@register
class Min(_Extreme):
    reduce = "min"


@register
@quiet
class LogSoftmax(Function):
    """x - log(sum(exp(x))) over `axis` (a tuple), shifted by the max (by 0 where the max is -inf), so
    that nan comes out where torch's does: a whole row where it holds +inf or nan. One node instead
    of the six of its formula: a loss over a large vocabulary runs it on (tokens, vocabulary), where
    each pass costs. On the host, over the last axis, it runs in blocks of rows that stay in cache
    (the word-LM benchmark's (700, 18000) float32 logits: forward 47 -> 37 ms, backward 38 -> 28 ms)."""

    def forward(self, a, axis):
        self.axis = axis
        out = buffers.empty_like(a)  # (from the buffer cache: a fresh one would be faulted in)
        for over, x, o in _row_blocks(a, axis, a, out):
            xp = get_array_module(x)
            peak = x.max(axis=over, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, dtype=x.dtype)
            xp.subtract(x, xp.where(peak == -float("inf"), 0, peak), out=o)
            total = xp.exp(o).sum(axis=over, keepdims=True)
            o -= xp.log(total, out=total)
        self.save_for_backward(out)
        return out

    def backward(self, g):
        # d/dx_i = g_i - softmax_i * sum_j g_j
        d = buffers.empty_like(g)
        for over, out, g_rows, d_rows in _row_blocks(g, self.axis, self.saved[0], g, d):
            xp = get_array_module(out)
            xp.exp(out, out=d_rows)
            d_rows *= g_rows.sum(axis=over, keepdims=True)
            xp.subtract(g_rows, d_rows, out=d_rows)
        return d


def _row_blocks(like, axis, *arrays):
    """(axis to reduce, *blocks): matching blocks of rows of `arrays` (like's shape) for a reduction
    over the last axis, about 256 KiB each; the arrays whole, and `axis`, where that does not apply
    (another axis, a device array, a non-contiguous one, a block as large as the whole)."""
    columns = like.shape[-1] if like.ndim else 1
    rows = max(1, (256 * 1024) // max(1, columns * like.itemsize))
    if (not on_host(like) or like.ndim < 2 or axis != (like.ndim - 1,) or rows >= like.size // max(1, columns)
            or not all(a.flags.c_contiguous for a in arrays)):
        yield (axis, *arrays)
        return
    flat = [a.reshape(-1, columns) for a in arrays]
    for start in range(0, flat[0].shape[0], rows):
        yield (1, *(f[start:start + rows] for f in flat))


# ---- movement ----------------------------------------------------------------------

@register
class Reshape(Function):
    def forward(self, a, shape):
        self.in_shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


@register
class Permute(Function):
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, g):
        inverse = [0] * len(self.axes)
        for i, axis in enumerate(self.axes):
            inverse[axis] = i
        return g.transpose(inverse)


@register
class Expand(Function):
    def forward(self, a, shape):
        return get_array_module(a).broadcast_to(a, shape)

    def backward(self, g):
        return g  # the engine sums it back to the input's shape


def _is_advanced(index):
    return any(not isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in index)


@register
class GetItem(Function):
    """Basic and integer-array indexing; backward scatters (adding repeated indices) into the
    input's gradient in place, through the engine (see autograd.SparseGrad)."""

    def forward(self, a, index):
        self.in_shape = a.shape
        self.advanced = _is_advanced(index)
        self.basic = None if self.advanced else index  # ints and slices, kept: the renderer reads out[t]
        self.save_for_backward(index)  # index arrays can be large: freed with the graph
        return a[index]

    def backward(self, g):
        (index,) = self.saved
        return SparseGrad(index, g, self.in_shape, self.advanced)


def replay(chain, array):
    """Re-run a chain of view ops ((Function subclass, kwargs), ...) on an array: the same view
    of another array of the base's shape (the base's storage, or a gradient)."""
    for op, kwargs in chain:
        array = op().forward(array, **kwargs)
    return array


def write_region(chain, target, value):
    """target's region under `chain` = value, in place. The last step may be an advanced index,
    whose getitem would be a copy, so it is applied as a setitem."""
    holder = replay(chain[:-1], target)
    op, kwargs = chain[-1]
    if op is GetItem:
        holder[kwargs["index"]] = value
    else:
        replay(chain[-1:], holder)[...] = value


@register
class CopySlices(Function):
    """base with its region under `chain` (view ops from base to region) replaced by value:
    what `t[i] = v` and in-place ops on views record (torch's CopySlices). With inplace=True
    the base's own array is written and returned: the Tensor side then re-points the base."""

    def forward(self, base, value, chain, inplace=False):
        self.save_for_backward(chain)  # index arrays can be large: freed with the graph
        out = base if inplace else base.copy()
        write_region(chain, out, value)
        return out

    def backward(self, g):
        (chain,) = self.saved
        need_base, need_value = self.needs_input_grad
        g_base = None
        if need_base:
            g_base = g.copy()
            write_region(chain, g_base, 0)
        return g_base, replay(chain, g) if need_value else None


def check_index_array(array, op="getitem"):
    if array.dtype.kind not in "iub":
        raise DTypeError(f"{op}: index arrays must be integer or bool, got {array.dtype}")


@register
class Cat(Function):
    def forward(self, *arrays, axis=0):
        shapes = [a.shape for a in arrays]
        ndim = arrays[0].ndim
        for s in shapes:
            if len(s) != ndim or any(n != m for i, (n, m) in enumerate(zip(s, shapes[0])) if i != axis):
                raise ShapeError(f"cat along axis {axis}: shapes {shapes} differ off that axis")
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, g):
        grads, start = [], 0
        index = [slice(None)] * g.ndim
        for size in self.sizes:
            index[self.axis] = slice(start, start + size)
            grads.append(g[tuple(index)])
            start += size
        return tuple(grads)


@register
class Stack(Function):
    """N arrays of one shape -> one with a new axis of length N. One node for all N (a layer's T
    outputs are not T unsqueezes and a cat); backward hands each input its row of the gradient, a view."""

    def forward(self, *arrays, axis=0):
        self.axis = axis
        return get_array_module(arrays[0]).stack(arrays, axis=axis)

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(g[lead + (k,)] for k in range(g.shape[self.axis]))


@register
@quiet  # inf times 0 in a product is nan, and large products overflow: torch says nothing of either
class MatMul(Function):
    """Batched matrix product of two arrays of at least 2 dims; batch dims broadcast."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align "
                             f"(inner sizes {a.shape[-1:]} vs {b.shape[-2:-1]})")
        if a.dtype != b.dtype:  # torch refuses; promoting would silently turn a float32 model float64
            raise DTypeError(f"matmul: dtypes differ ({a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}); "
                             "cast one with .to(dtype)")
        grad_a, grad_b = self.parents
        self.save_for_backward(a if grad_b is not None else None, b if grad_a is not None else None)
        self.one_matrix = b.ndim == 2  # a stack of rows (or one matrix) times one matrix
        return buffers.matmul(a, b) if self.one_matrix else a @ b

    def backward(self, g):
        a, b = self.saved
        if self.one_matrix:
            # b's gradient as one (K, rows) @ (rows, N) product, not a stack of per-matrix products
            # that sum_to then adds up (T times b's size in memory)
            ga = None if b is None else buffers.matmul(g, b.T)
            gb = None if a is None else a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
        else:
            ga = None if b is None else g @ b.swapaxes(-1, -2)
            gb = None if a is None else a.swapaxes(-1, -2) @ g
        return ga, gb


@register
@quiet
class Linear(Function):
    """x (*, I) @ w (O, I)^T [+ b (O,)]: torch's addmm. One node, and the bias added in place into the
    matmul's result: a separate add would allocate (and on first touch fault in) a second output."""

    def forward(self, x, w, b=None):
        if x.ndim < 1 or w.ndim != 2 or x.shape[-1] != w.shape[1]:
            raise ShapeError(f"linear: input {tuple(x.shape)} has {x.shape[-1:] or 'no'} features, the weight "
                             f"{tuple(w.shape)} expects {w.shape[1:]}")
        if x.dtype != w.dtype or (b is not None and b.dtype != w.dtype):
            raise DTypeError(f"linear: dtypes differ (input {x.dtype}, weight {w.dtype}"
                             f"{'' if b is None else f', bias {b.dtype}'}); cast one with .to(dtype)")
        grad_x, grad_w = self.parents[:2]
        self.save_for_backward(x if grad_w is not None else None, w if grad_x is not None else None)
        out = buffers.matmul(x, w.T)
        if b is not None:
            out += b
        return out

    def backward(self, g):
        x, w = self.saved
        needs = self.needs_input_grad
        rows = g.reshape(-1, g.shape[-1])
        d_w = rows.T @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        d_b = rows.sum(0) if len(needs) == 3 and needs[2] else None
        return (buffers.matmul(g, w) if needs[0] else None), d_w, d_b


def batch_stats(x, axes):
    """(mean, biased variance, x - mean) of x over `axes`, the first two in keepdims shape: what
    BatchNorm normalises by and what a BatchNorm1d blends into its running buffers."""
    xp = get_array_module(x)
    if x.dtype == xp.float16:  # in float32, as torch: a float16 sum of 4000 values near 100 is inf
        x = x.astype(xp.float32)
    count = x.size // x.shape[1]
    mean = x.sum(axes, keepdims=True) / count
    centred = buffers.empty_like(x)
    xp.subtract(x, mean, out=centred)
    dims = "ijk"[:x.ndim]  # the sum of squares over every axis but the channels', with no temporary
    var = xp.einsum(f"{dims},{dims}->j", centred, centred).reshape(mean.shape) / count
    return mean, var, centred


@register
class BatchNorm(Function):
    """Batch normalisation by the batch's own statistics (training mode) in one node, as a
    hand-written BatchNorm: x (N, C) or (N, C, L), and w, b (C,) both or neither; `var` and
    `centred` (x minus the batch mean) from batch_stats, which the caller also blends into its
    running buffers. Backward: d_x = w / std * (d - mean(d) - x_hat mean(d x_hat)), a few passes
    over d instead of the composite formula's dozen nodes. A float16 input is worked in float32
    (batch_stats' dtype) and its results cast back."""

    def forward(self, x, w=None, b=None, var=None, centred=None, axes=(0,), eps=1e-5):
        xp = get_array_module(x)
        inv_std = var + eps
        xp.sqrt(inv_std, out=inv_std)
        xp.divide(1, inv_std, out=inv_std)
        x_hat = centred  # batch_stats' own array: written over
        x_hat *= inv_std
        self.axes, self.count, self.dtype_in = axes, x.size // x.shape[1], x.dtype
        if w is None:  # the output a copy: an in-place write on it must not reach what backward reads
            self.save_for_backward(x_hat, inv_std, None)
            return x_hat.astype(x.dtype)
        shape = inv_std.shape
        out = xp.multiply(x_hat, w.reshape(shape))
        out += b.reshape(shape)
        self.save_for_backward(x_hat, inv_std, w if self.parents[0] is not None else None)
        return out.astype(x.dtype, copy=False)

    def backward(self, g):
        x_hat, inv_std, w = self.saved
        needs = self.needs_input_grad
        axes, shape, low = self.axes, inv_std.shape, self.dtype_in
        g = g.astype(x_hat.dtype, copy=False)
        d_b = g.sum(axes)
        d_w = (g * x_hat).sum(axes)
        d_x = None
        if needs[0]:
            scale = inv_std if w is None else inv_std * w.reshape(shape)
            d_x = x_hat * (d_w.reshape(shape) / -self.count)
            d_x += g
            d_x -= d_b.reshape(shape) / self.count
            d_x *= scale
            d_x = d_x.astype(low, copy=False)
        if len(needs) == 1:
            return d_x
        return d_x, d_w.astype(low, copy=False) if needs[1] else None, d_b.astype(low, copy=False) if needs[2] else None


# ---- fused recurrent cell steps ----------------------------------------------------------
# One node per time step instead of a dozen: the recurrent matmul, the pointwise gate math in
# whole-array passes, and a hand-derived backward that keeps only what it needs. Each takes the
# step's input projection x_proj (B, G*H) (x W_ih^T + biases) or, with `step=t`, the layer's
# projection of every step (T, B, G*H), read at row t with no slice node (its gradient goes back as
# a SparseGrad into one buffer); and w_hh (G*H, H) in the parameter's own layout. A layer passes
# `w_hh_t`, a contiguous copy of w_hh.T made once per sequence: h @ w_hh.T on the transposed view
# costs BLAS 1.6x more than on a contiguous (H, G*H) (32x128 by 128x512: 89 against 55 us), and
# backward's d_pre @ w_hh is fast on the parameter as it is. nn/cells.py uses these when
# tg.nn.fused() is on; the op-by-op cells there are the reference they are tested against.

def _gate_vectors(like, pattern, hidden):
    """Per column of a (B, G*H) gate array, the value of `pattern` (one number per gate), as an
    array of like's dtype and device (cached: the steps of a sequence share them)."""
    key = (pattern, hidden, like.dtype.str, type(like), str(getattr(like, "device", "")))
    vector = _GATE_VECTORS.get(key)
    if vector is None:
        xp = get_array_module(like)
        vector = xp.repeat(xp.asarray(pattern, dtype=like.dtype), hidden)
        if len(_GATE_VECTORS) < 256:
            _GATE_VECTORS[key] = vector
    return vector


_GATE_VECTORS = {}


def _sigmoid_(a):
    """a <- sigmoid(a) in place, as (tanh(a/2) + 1) / 2: it cannot overflow (1 / (1 + exp(-a)) does,
    below -88 in float32), and it equals that formula to rounding."""
    xp = get_array_module(a)
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _times_sigmoid_grad_(grad, s):
    """grad <- grad * s * (1 - s) in place, for s = sigmoid(pre-activation)."""
    grad *= s
    grad *= 1 - s
    return grad


def check_cell_dtypes(op, x_proj, h, w_hh):
    """Mixed dtypes are refused, as MatMul refuses them (a float32 model would silently turn float64)."""
    if h.dtype != w_hh.dtype or x_proj.dtype != w_hh.dtype:
        raise DTypeError(f"{op}: dtypes differ (x_proj {x_proj.dtype}, h {h.dtype}, w_hh {w_hh.dtype}); "
                         "cast one with .to(dtype)")


def _step_input(op, x_proj, h, w_hh, step):
    """The step's own (B, G*H) input projection (dtypes checked)."""
    check_cell_dtypes(op, x_proj, h, w_hh)
    if step is None:
        return x_proj
    if x_proj.ndim != 3 or not -x_proj.shape[0] <= step < x_proj.shape[0]:
        raise ShapeError(f"{op}: step={step} needs x_proj of shape (T, B, G*H) with T > {step}, got "
                         f"{tuple(x_proj.shape)}")
    return x_proj[step]


def _recurrent_pre(h, w_hh, w_hh_t, x):
    """h @ w_hh^T + x: every gate's pre-activation, in one new (B, G*H) array."""
    pre = h @ (w_hh.T if w_hh_t is None else w_hh_t)
    pre += x
    return pre


def _input_grad(needs, d_pre, x_shape, step):
    """The gradient of x_proj: d_pre itself, or with `step` a SparseGrad at row `step` (the engine
    adds the T rows into one (T, B, G*H) buffer)."""
    if not needs[0]:
        return None
    return d_pre if step is None else SparseGrad((step,), d_pre, x_shape, False)


def _weight_grads(needs, h, d_pre, w_hh, has_bias):
    """(grad of h through the matmul, of w_hh, of b_hh) for the pre-activation gradient d_pre.
    w_hh's (d_pre^T h) is left to the engine to sum over all steps in one matmul (autograd.MatmulGrad)."""
    d_h = d_pre @ w_hh if needs[1] else None
    d_w = MatmulGrad(d_pre, h) if needs[-2 if has_bias else -1] else None
    d_b = d_pre.sum(0) if has_bias and needs[-1] else None
    return d_h, d_w, d_b


# sigmoid(a) = (tanh(a/2) + 1) / 2: the LSTM's four gates (i, f sigmoid, g tanh, o sigmoid) go through
# one tanh over the whole contiguous (B, 4H) array, scaled by these per-gate numbers before and after
_LSTM_SCALE, _LSTM_SHIFT = (0.5, 0.5, 1.0, 0.5), (0.5, 0.5, 0.0, 0.5)
# the activations' derivatives from their outputs, every gate at once: (a - y) * y + b is
# s(1 - s) for a sigmoid's s (a = 1, b = 0) and 1 - t^2 for tanh's t (a = 0, b = 1)
_LSTM_DERIV_A, _LSTM_DERIV_B = (1.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 0.0)


@jit_kernel
def lstm_activate_(gates, c, h_out, c_out, tanh_c_out):
    """The LSTM cell after its matmul: gates (B, 4H) pre-activations -> activations, in place; then
    c' = f*c + i*g into c_out, tanh(c') into tanh_c_out, h' = o*tanh(c') into h_out."""
    hidden = c.shape[-1]
    xp = get_array_module(gates)
    gates *= _gate_vectors(gates, _LSTM_SCALE, hidden)
    xp.tanh(gates, out=gates)
    gates *= _gate_vectors(gates, _LSTM_SCALE, hidden)
    gates += _gate_vectors(gates, _LSTM_SHIFT, hidden)
    i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
    c_new = xp.multiply(f, c, out=c_out)
    c_new += i * g
    xp.tanh(c_new, out=tanh_c_out)
    xp.multiply(o, tanh_c_out, out=h_out)


@jit_kernel
def lstm_backward(gates, c, tanh_c, d_h_new, d_c_new, d_pre):
    """The LSTM cell's backward to its pre-activations, into d_pre (B, 4H), from the gradients
    reaching h' and c'. Returns the gradient reaching c. d_pre may be `gates` itself: every gate is
    read before d_pre is written (so a sequence whose saved gates are freed after its backward
    writes its gradient there instead of into a second (T, B, 4H) array)."""
    batch, hidden = tanh_c.shape
    xp = get_array_module(gates)
    i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
    d_c = tanh_c * tanh_c  # becomes the gradient reaching c', from h' and from the next step
    xp.subtract(1, d_c, out=d_c)
    d_c *= o
    d_c *= d_h_new
    d_c += d_c_new
    deriv = _gate_vectors(gates, _LSTM_DERIV_A, hidden) - gates  # each activation's derivative ...
    deriv *= gates
    deriv += _gate_vectors(gates, _LSTM_DERIV_B, hidden)
    deriv[:, :hidden] *= g  # ... times what multiplies that activation
    deriv[:, hidden:2 * hidden] *= c
    deriv[:, 2 * hidden:3 * hidden] *= i
    deriv[:, 3 * hidden:] *= tanh_c
    d_c_prev = d_c * f
    xp.multiply(deriv.reshape(batch, 4, hidden)[:, :3], d_c.reshape(batch, 1, hidden),
                out=d_pre.reshape(batch, 4, hidden)[:, :3])
    xp.multiply(deriv[:, 3 * hidden:], d_h_new, out=d_pre[:, 3 * hidden:])
    return d_c_prev


@register
class LSTMStep(Function):
    """x_proj (B, 4H) (or (T, B, 4H) with step=t), h, c (B, H), w_hh (4H, H) -> (2, B, H): h' stacked
    on c' (the cell splits them with views). Gates i, f, g, o; c' = f*c + i*g, h' = o*tanh(c')."""

    def forward(self, x_proj, h, c, w_hh, step=None, w_hh_t=None):
        xp = get_array_module(x_proj)
        gates = _recurrent_pre(h, w_hh, w_hh_t, _step_input("lstmstep", x_proj, h, w_hh, step))
        out = xp.empty((2,) + h.shape, dtype=gates.dtype)
        tanh_c = xp.empty(h.shape, dtype=gates.dtype)
        lstm_activate_(gates, c, out[0], out[1], tanh_c)
        need_h, need_w = self.parents[1] is not None, self.parents[3] is not None
        self.step, self.x_shape = step, x_proj.shape
        self.save_for_backward(gates, c, tanh_c, h if need_w else None, w_hh if need_h else None)
        return out

    def backward(self, grad):
        gates, c, tanh_c, h, w_hh = self.saved
        d_pre = gates if self.consume_saved() else get_array_module(grad).empty_like(gates)
        d_c = lstm_backward(gates, c, tanh_c, grad[0], grad[1], d_pre)
        needs = self.needs_input_grad
        d_h, d_w, _ = _weight_grads(needs, h, d_pre, w_hh, False)
        return _input_grad(needs, d_pre, self.x_shape, self.step), d_h, d_c if needs[2] else None, d_w


@jit_kernel
def gru_activate(x, h, hp, rz_out, n_out, h_out):
    """The GRU cell after its matmul: x (B, 3H) input projection, hp = h W_hh^T (+ b_hh) (B, 3H) ->
    sigmoid(r, z) into rz_out (B, 2H), n into n_out, h' = n + z*(h - n) into h_out."""
    hidden = h.shape[-1]
    xp = get_array_module(x)
    _sigmoid_(xp.add(hp[:, :2 * hidden], x[:, :2 * hidden], out=rz_out))
    n = xp.multiply(rz_out[:, :hidden], hp[:, 2 * hidden:], out=n_out)
    n += x[:, 2 * hidden:]
    xp.tanh(n, out=n)
    out = xp.subtract(h, n, out=h_out)
    out *= rz_out[:, hidden:]
    out += n


@jit_kernel
def gru_backward(grad, rz, n, h_n, h, d_pre):
    """The GRU cell's backward to its input-side pre-activations (d_r, d_z, d_n) into d_pre (B, 3H),
    from the gradient reaching h'. The hidden side is the same with d_n times r."""
    hidden = n.shape[-1]
    xp = get_array_module(grad)
    r, z = rz[:, :hidden], rz[:, hidden:]
    d_r, d_z, d_n = (d_pre[:, k * hidden:(k + 1) * hidden] for k in range(3))
    xp.multiply(grad, 1 - z, out=d_n)
    d_n *= 1 - n * n
    _times_sigmoid_grad_(xp.multiply(d_n, h_n, out=d_r), r)
    _times_sigmoid_grad_(xp.multiply(grad, h - n, out=d_z), z)


@register
class GRUStep(Function):
    """x_proj (B, 3H) (or (T, B, 3H) with step=t), h (B, H), w_hh (3H, H)[, b_hh (3H,)] -> h' (B, H).
    Gates r, z, n: n = tanh(x_n + r*(h W_hn^T + b_hn)), h' = n + z*(h - n)."""

    def forward(self, x_proj, h, w_hh, b_hh=None, step=None, w_hh_t=None):
        hidden = h.shape[-1]
        xp = get_array_module(x_proj)
        x = _step_input("grustep", x_proj, h, w_hh, step)
        hp = h @ (w_hh.T if w_hh_t is None else w_hh_t)
        if b_hh is not None:  # b_hn is multiplied by r: the GRU's hidden bias cannot join x_proj
            hp += b_hh
        rz = xp.empty(h.shape[:1] + (2 * hidden,), dtype=hp.dtype)
        n, out = xp.empty_like(h, dtype=hp.dtype), xp.empty_like(h, dtype=hp.dtype)
        gru_activate(x, h, hp, rz, n, out)
        self.step, self.x_shape = step, x_proj.shape
        self.save_for_backward(rz, n, hp[:, 2 * hidden:], h, w_hh if self.parents[1] is not None else None)
        return out

    def backward(self, grad):
        rz, n, h_n, h, w_hh = self.saved
        hidden = n.shape[-1]
        d_pre = get_array_module(grad).empty(rz.shape[:1] + (3 * hidden,), dtype=grad.dtype)
        gru_backward(grad, rz, n, h_n, h, d_pre)
        needs = self.needs_input_grad
        # the input half of n sees d_n, the hidden half r * d_n: x_proj's gradient is a copy
        d_x = _input_grad(needs, d_pre.copy() if needs[0] else None, self.x_shape, self.step)
        d_pre[:, 2 * hidden:] *= rz[:, :hidden]
        d_h, d_w, d_b = _weight_grads(needs, h, d_pre, w_hh, len(needs) == 4)
        if d_h is not None:
            d_h += grad * rz[:, hidden:]
        return d_x, d_h, d_w, d_b


def rnn_activate_(pre, nonlinearity):
    xp = get_array_module(pre)
    if nonlinearity == "tanh":
        return xp.tanh(pre, out=pre)
    return xp.maximum(pre, pre.dtype.type(0), out=pre)


def rnn_derivative(out, nonlinearity, into):
    """The activation's derivative of a vanilla RNN, into `into`, from its output (any shape)."""
    xp = get_array_module(out)
    if nonlinearity == "tanh":
        xp.multiply(out, out, out=into)
        return xp.subtract(1, into, out=into)
    return xp.greater(out, 0, out=into)  # relu's output is positive exactly where its input was


def rnn_backward(grad, out, nonlinearity):
    """d loss / d pre-activation of a vanilla RNN step, from its output and the gradient reaching it."""
    d_pre = rnn_derivative(out, nonlinearity, get_array_module(out).empty_like(out))
    d_pre *= grad
    return d_pre


@register
class RNNStep(Function):
    """x_proj (B, H) (or (T, B, H) with step=t), h (B, H), w_hh (H, H)[, b_hh (H,)]
    -> h' = tanh or relu(x_proj + h W_hh^T + b_hh)."""

    def forward(self, x_proj, h, w_hh, b_hh=None, nonlinearity="tanh", step=None, w_hh_t=None):
        out = _recurrent_pre(h, w_hh, w_hh_t, _step_input("rnnstep", x_proj, h, w_hh, step))
        if b_hh is not None:
            out += b_hh
        rnn_activate_(out, nonlinearity)
        self.nonlinearity, self.step, self.x_shape = nonlinearity, step, x_proj.shape
        need_w = self.parents[2] is not None
        self.save_for_backward(out, h if need_w else None, w_hh if self.parents[1] is not None else None)
        return out

    def backward(self, grad):
        out, h, w_hh = self.saved
        d_pre = rnn_backward(grad, out, self.nonlinearity)
        needs = self.needs_input_grad
        d_h, d_w, d_b = _weight_grads(needs, h, d_pre, w_hh, len(needs) == 4)
        return _input_grad(needs, d_pre, self.x_shape, self.step), d_h, d_w, d_b
