"""One time step of the recurrent cells (torch's gate orders), as functions and as modules.

Each cell is split in two, so that a sequence layer can do the input half for all
time steps in one matmul:

    x_proj = x @ w_ih.T + b_ih                     (B, G*H)  -- `linear`, any number of steps at once
    state  = step(x_proj, state, w_hh_t, b_hh)     state is a tuple: (h,) or (h, c), each (B, H)

`w_hh_t` is w_hh transposed once, (H, G*H), so a loop over time does not transpose it
at every step. For the RNN and LSTM `b_hh` enters linearly and may be folded into
x_proj (the step then gets b_hh=None); the GRU multiplies it by r, so it stays in the step.

Each cell has two steps: the fused one (one node per step, ops.LSTMStep / GRUStep / RNNStep,
with a hand-derived backward), used by default, and the op-by-op one (a node per gate, every
gate marked for the renderer), used under `with tg.nn.fused(False):`. They agree to rounding.
"""
from __future__ import annotations

import math
from collections import namedtuple

from .. import ops as P
from ..autograd import mark, scope
from ..creation import zeros
from ..errors import DTypeError, InvalidValueError, ShapeError
from . import init
from .functional import check_tensor, linear
from .mode import fused, is_fused, set_fused  # noqa: F401  (nn re-exports them from here)
from .module import Module, Parameter
from ..tensor import apply


def _recurrent(h, w_hh_t, b_hh, x_proj=None):
    """h @ w_hh_t (+ b_hh) (+ x_proj): the pre-activations of every gate, (B, G*H)."""
    out = h @ w_hh_t
    if x_proj is not None:
        out = x_proj + out
    return out if b_hh is None else out + b_hh


# The steps `mark` their gates and states with the names of the equations (i, f, g, o, c, h;
# r, z, n), so that a rendered graph reads like the lecture notes; marking costs an attribute.

def rnn_tanh_step(x_proj, state, w_hh_t, b_hh=None):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    return (mark(_recurrent(state[0], w_hh_t, b_hh, x_proj).tanh(), "h"),)


def rnn_relu_step(x_proj, state, w_hh_t, b_hh=None):
    """h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    return (mark(_recurrent(state[0], w_hh_t, b_hh, x_proj).relu(), "h"),)


def lstm_step(x_proj, state, w_hh_t, b_hh=None):
    """Gates i, f, g, o from one matmul; c' = f*c + i*g, h' = o*tanh(c')."""
    h, c = state
    i, f, g, o = _recurrent(h, w_hh_t, b_hh, x_proj).chunk(4, -1)
    c = mark(mark(f.sigmoid(), "f") * c + mark(i.sigmoid(), "i") * mark(g.tanh(), "g"), "c")
    return mark(mark(o.sigmoid(), "o") * c.tanh(), "h"), c


def gru_step(x_proj, state, w_hh_t, b_hh=None):
    """Gates r, z, n: n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h' = (1-z)*n + z*h."""
    (h,) = state
    x_r, x_z, x_n = x_proj.chunk(3, -1)
    h_r, h_z, h_n = _recurrent(h, w_hh_t, b_hh).chunk(3, -1)
    r = mark((x_r + h_r).sigmoid(), "r")
    z = mark((x_z + h_z).sigmoid(), "z")
    n = mark((x_n + r * h_n).tanh(), "n")
    return (mark(n + z * (h - n), "h"),)


def _as_state(step_output):
    """The state a fused RNN/GRU step hands on, as a view node marked "h": a renderer draws the step
    as a cell and h as the state leaving it, as for the LSTM's two views (the step node itself
    marked "h" would leave the cell with nothing of its own to draw)."""
    return (mark(step_output.reshape(step_output.shape), "h"),)


# The fused steps take w_hh in its own layout (G*H, H), and from a sequence layer `step` (x_proj then
# holds every step, (T, B, G*H)) and `w_hh_t` (a contiguous w_hh.T made once): see ops.LSTMStep.

def fused_rnn_step(nonlinearity):
    def step(x_proj, state, w_hh, b_hh=None, t=None, w_hh_t=None):
        bias = () if b_hh is None else (b_hh,)
        return _as_state(apply(P.RNNStep, x_proj, state[0], w_hh, *bias, nonlinearity=nonlinearity, step=t,
                               w_hh_t=w_hh_t))
    step.__name__ = f"fused_rnn_{nonlinearity}_step"
    return step


def fused_lstm_step(x_proj, state, w_hh, b_hh=None, t=None, w_hh_t=None):
    """One LSTMStep node, its (2, B, H) output split into h' and c' by two views."""
    if b_hh is not None:
        x_proj = x_proj + b_hh
    both = apply(P.LSTMStep, x_proj, *state, w_hh, step=t, w_hh_t=w_hh_t)
    return mark(both[0], "h"), mark(both[1], "c")


def fused_gru_step(x_proj, state, w_hh, b_hh=None, t=None, w_hh_t=None):
    bias = () if b_hh is None else (b_hh,)
    return _as_state(apply(P.GRUStep, x_proj, state[0], w_hh, *bias, step=t, w_hh_t=w_hh_t))


def mark_cut(new_state, old_state, default):
    """On a step whose incoming state has no graph (the default zeros, or a state the caller
    detached: truncated BPTT), note the cut on its new h, so a renderer can draw where backward stops."""
    if not old_state[0].requires_grad:
        mark(new_state[0], "h", "zero" if default else "detached")
    return new_state


# gates: rows of w_ih per hidden unit; folds_hidden_bias: b_hh may join the input projection;
# step: op by op, step(x_proj, state, w_hh.T, b_hh); fused_step: one node, fused_step(x_proj, state, w_hh, b_hh).
CellKind = namedtuple("CellKind", ["name", "gates", "state_size", "step", "folds_hidden_bias", "fused_step"])

KINDS = {
    "RNN_TANH": CellKind("RNN_TANH", 1, 1, rnn_tanh_step, True, fused_rnn_step("tanh")),
    "RNN_RELU": CellKind("RNN_RELU", 1, 1, rnn_relu_step, True, fused_rnn_step("relu")),
    "LSTM": CellKind("LSTM", 4, 2, lstm_step, True, fused_lstm_step),
    "GRU": CellKind("GRU", 3, 1, gru_step, False, fused_gru_step),
}


def _cell(kind, x, state, w_ih, w_hh, b_ih, b_hh):
    kind, x_proj = KINDS[kind], linear(x, w_ih, b_ih)
    if is_fused():
        return kind.fused_step(x_proj, tuple(state), w_hh, b_hh)
    return kind.step(x_proj, tuple(state), w_hh.T, b_hh)


def rnn_tanh_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """x (B, I), h (B, H), w_ih (H, I), w_hh (H, H), biases (H,) -> h' (B, H)."""
    return _cell("RNN_TANH", x, (h,), w_ih, w_hh, b_ih, b_hh)[0]


def rnn_relu_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """x (B, I), h (B, H), w_ih (H, I), w_hh (H, H), biases (H,) -> h' (B, H)."""
    return _cell("RNN_RELU", x, (h,), w_ih, w_hh, b_ih, b_hh)[0]


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None):
    """x (B, I), state (h, c) each (B, H), w_ih (4H, I), w_hh (4H, H), biases (4H,) -> (h', c')."""
    return _cell("LSTM", x, state, w_ih, w_hh, b_ih, b_hh)


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """x (B, I), h (B, H), w_ih (3H, I), w_hh (3H, H), biases (3H,) -> h' (B, H)."""
    return _cell("GRU", x, (h,), w_ih, w_hh, b_ih, b_hh)[0]


# ---- parameters shared by the cell modules and the sequence layers -------------------

def register_cell_parameters(module, suffix, input_size, hidden_size, gates, bias):
    """weight_ih{suffix} (G*H, I), weight_hh{suffix} (G*H, H), bias_ih{suffix}, bias_hh{suffix} (G*H,)."""
    rows = gates * hidden_size
    module.register_parameter(f"weight_ih{suffix}", Parameter(zeros(rows, input_size)))
    module.register_parameter(f"weight_hh{suffix}", Parameter(zeros(rows, hidden_size)))
    for name in (f"bias_ih{suffix}", f"bias_hh{suffix}"):
        module.register_parameter(name, Parameter(zeros(rows)) if bias else None)


def rnn_mode(nonlinearity, who):
    """'tanh' -> 'RNN_TANH', 'relu' -> 'RNN_RELU' (keys of KINDS)."""
    if nonlinearity not in ("tanh", "relu"):
        raise InvalidValueError(f"{who}: unknown nonlinearity {nonlinearity!r} (expected 'tanh' or 'relu')")
    return f"RNN_{nonlinearity.upper()}"


class RecurrentModule(Module):
    """What the cell modules and the sequence layers share: torch's init and repr."""

    def _init_parameters(self, device, dtype):
        self.reset_parameters()
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    def reset_parameters(self):
        """torch's default for every recurrent weight and bias: uniform(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    _repr_defaults = (("bias", True), ("nonlinearity", "tanh"))  # shown when not the default, as in torch

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in self._repr_defaults:
            if getattr(self, name, default) != default:
                s += f", {name}={getattr(self, name)}"
        return s


def check_input(who, x, dims, layout, input_size, weight):
    """x must be a Tensor of one of `dims` dims, input_size features last, and the parameters' dtype."""
    if check_tensor(x, who).ndim not in dims:
        raise ShapeError(f"{who}: expected input of {layout}, got shape {x.shape}")
    if x.shape[-1] != input_size:
        raise ShapeError(f"{who}: expected input with {input_size} features (input_size), "
                         f"got {x.shape[-1]} (input shape {x.shape})")
    if x.dtype != weight.dtype:
        raise DTypeError(f"{who}: input is {x.dtype} but the parameters are {weight.dtype}; "
                         f"cast one with .to(dtype)")


# ---- cell modules ---------------------------------------------------------------------

class _CellBase(RecurrentModule):
    def __init__(self, kind, input_size, hidden_size, bias, device, dtype):
        super().__init__()
        self._kind = kind  # a key of KINDS
        if input_size <= 0 or hidden_size <= 0:
            raise ShapeError(f"{type(self).__name__}: input_size and hidden_size must be positive, "
                             f"got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        register_cell_parameters(self, "", input_size, hidden_size, KINDS[self._kind].gates, bias)
        self._init_parameters(device, dtype)

    def _step(self, x, hx):
        """x (B, I) or (I,); hx a tuple of (B, H) or (H,) tensors, or None -> tuple of new states."""
        who = type(self).__name__
        check_input(who, x, (1, 2), "2 dims (B, input_size) or 1 dim unbatched", self.input_size, self.weight_ih)
        batched = x.ndim == 2
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        default = hx is None
        if default:
            hx = (zeros(*expected, dtype=x.dtype, device=x.device),) * KINDS[self._kind].state_size
        for i, h in enumerate(hx):
            if check_tensor(h, who, f"hx{f'[{i}]' if len(hx) > 1 else ''}").shape != expected:
                raise ShapeError(f"{who}: expected hx{f'[{i}]' if len(hx) > 1 else ''} of shape {expected}, "
                                 f"got {h.shape} (input shape {x.shape})")
        if not batched:
            x, hx = x.unsqueeze(0), tuple(h.unsqueeze(0) for h in hx)
        with scope(who.lower()):
            state = mark_cut(_cell(self._kind, x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh),
                             hx, default)
        return state if batched else tuple(s.squeeze(0) for s in state)


class RNNCell(_CellBase):
    """One step of an Elman RNN: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu).

    Call it in a Python loop to unroll by hand; each call is one scope entry (`rnncell`), so the
    renderer draws the loop as time steps. Parameters `weight_ih` (H, I), `weight_hh` (H, H),
    `bias_ih`, `bias_hh` (H,).

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b_ih and b_hh. Default True.
        nonlinearity: "tanh" or "relu". Default "tanh".
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(B, I)` or `(I,)` unbatched.
        - **hx** `(B, H)` (or `(H,)`), or None for zeros.

    Outputs:
        - **h'** `(B, H)` (or `(H,)`).

    Examples:
        >>> cell = nn.RNNCell(10, 20)
        >>> h = None
        >>> for x in tg.randn(6, 3, 10):
        ...     h = cell(x, h)
        >>> h.shape
        (3, 20)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__(rnn_mode(nonlinearity, "RNNCell"), input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, None if hx is None else (hx,))[0]


class LSTMCell(_CellBase):
    """One LSTM step, gate order i, f, g, o: c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').

    Parameters `weight_ih` (4H, I), `weight_hh` (4H, H), `bias_ih`, `bias_hh` (4H,).

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b_ih and b_hh. Default True.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(B, I)` or `(I,)` unbatched.
        - **hx** a tuple `(h, c)`, each `(B, H)` (or `(H,)`), or None for zeros.

    Outputs:
        - **(h', c')** each `(B, H)` (or `(H,)`).

    Examples:
        >>> cell = nn.LSTMCell(10, 20)
        >>> h, c = cell(tg.randn(3, 10))
        >>> h.shape, c.shape
        ((3, 20), (3, 20))
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise DTypeError(f"LSTMCell: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        return self._step(input, hx)


class GRUCell(_CellBase):
    """One GRU step, gate order r, z, n: n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn)),
    h' = (1 − z) ⊙ n + z ⊙ h.

    Parameters `weight_ih` (3H, I), `weight_hh` (3H, H), `bias_ih`, `bias_hh` (3H,).

    Args:
        input_size: I.
        hidden_size: H.
        bias: learn b_ih and b_hh. Default True.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(B, I)` or `(I,)` unbatched.
        - **hx** `(B, H)` (or `(H,)`), or None for zeros.

    Outputs:
        - **h'** `(B, H)` (or `(H,)`).

    Examples:
        >>> nn.GRUCell(10, 20)(tg.randn(3, 10)).shape
        (3, 20)
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, None if hx is None else (hx,))[0]
