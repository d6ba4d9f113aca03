"""Sequence layers: one unroll over time, one loop over layers x directions, thin RNN/LSTM/GRU on top.

Shapes follow torch: input (T, B, I) (or (B, T, I) with batch_first, or (T, I) unbatched),
output (T, B, D*H), states (D*num_layers, B, H) with D = 2 when bidirectional.

Variable-length batches take `lengths` (one int per batch element, any order) instead of
torch's packed sequences: a 0/1 mask keeps each sequence's state fixed at its padded
steps (state = where(real, new, old)), so h_n is the state at the last real step, the
reverse direction starts at the last real step, and padded outputs are zero, as after
pad_packed_sequence.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from .. import sequence as P
from ..autograd import current_scope, mark, scope
from ..creation import zeros
from ..errors import DTypeError, InvalidValueError, ShapeError
from ..sequence import Unrolled, attach, reserve_steps
from ..tensor import Tensor, apply, cat, stack, where
from . import init
from .cells import (KINDS, RecurrentModule, RNNCell, check_input, is_fused, mark_cut, register_cell_parameters,
                    rnn_mode)
from .functional import dropout, linear


def unstack(x):
    """x (T, ...) -> [x[0], ..., x[T-1]]; their gradients meet in one buffer (autograd.SparseGrad)."""
    return [x[t] for t in range(x.shape[0])]


def unroll(step, steps, state, reverse=False, masks=None, label="l0", default=False):
    """Run `step(t, state) -> new state` over time.

    state: tuple of (B, H); masks: None or `steps` entries, each None (every sequence real at t)
    or a (B, 1) bool array (False where t is padding); default: the state is the layer's own zeros
    (not the caller's), for the renderer's cut. Returns the outputs h_t in time order and the final
    state tuple.
    """
    outputs = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        with scope(f"{label}/t{t}"):
            new = mark_cut(step(t, state), state, default)
            if masks is not None and masks[t] is not None:
                new = tuple(mark(where(masks[t], n, old), role) for n, old, role in zip(new, state, "hc"))
        state = new
        outputs[t] = state[0]
    return outputs, state


_SEQUENCES = {"LSTM": P.LSTMSequence, "GRU": P.GRUSequence, "RNN_TANH": P.RNNSequence, "RNN_RELU": P.RNNSequence}


def _run_direction(kind, x, state, weights, reverse, masks, label, default):
    """One layer, one direction: x (T, B, I) -> outputs (T, B, H), final state tuple."""
    w_ih, w_hh, b_ih, b_hh = weights
    steps, batch = x.shape[:2]
    b_step = None if kind.folds_hidden_bias else b_hh
    fused = is_fused()
    with scope(f"{label}/input"):
        # The input half of every gate for all steps in one matmul; for RNN/LSTM b_hh joins it.
        bias = b_ih + b_hh if kind.folds_hidden_bias and b_ih is not None else b_ih
        proj = linear(x.reshape(steps * batch, x.shape[2]), w_ih, bias).reshape(steps, batch, w_ih.shape[0])
        if fused:  # the recurrent matmul on a contiguous, padded w_hh.T (see ops.LSTMStep)
            w_hh_t = backend.matmul_operand(w_hh._data.T)
        else:
            x_steps, w_hh_t = unstack(proj), w_hh.T
    if fused and (masks is None or all(m is None for m in masks)):
        return _run_sequence(kind, proj, state, w_hh, b_step, w_hh_t, reverse, label, default)
    if fused:  # padded steps: each step a node, so that the masks can hold the state
        def step(t, state):
            return kind.fused_step(proj, state, w_hh, b_step, t, w_hh_t)
    else:
        def step(t, state):
            return kind.step(x_steps[t], state, w_hh_t, b_step)
    outputs, final = unroll(step, steps, state, reverse, masks, label, default)
    with scope(f"{label}/output"):
        return stack(outputs), final


def _run_sequence(kind, proj, state, w_hh, b_step, w_hh_t, reverse, label, default):
    """The whole loop in one node (tinygrad_rnn.sequence), that graph readers see as its steps."""
    steps = proj.shape[0]
    cut = None if state[0].requires_grad else "zero" if default else "detached"
    info = Unrolled(current_scope(), label, steps, cut)
    lstm = kind.name == "LSTM"
    extra = {"nonlinearity": kind.name[4:].lower()} if kind.name.startswith("RNN") else {}
    if lstm:  # the input projection is this layer's own: the LSTM makes its gates in place there
        extra["own_proj"] = True
    bias = () if b_step is None else (b_step,)
    states = apply(_SEQUENCES[kind.name], proj, *state, w_hh, *bias, w_hh_t=w_hh_t, reverse=reverse, **extra)
    reserve_steps(states, info)  # before the consumers below are made
    last = 0 if reverse else steps  # the row of the last step's h (the first row holds h0 unless reversed)
    finals = (states[last], states[steps + 1]) if lstm else (states[last],)
    with scope(f"{label}/output"):
        output = apply(P.SequenceOutput, states, start=0 if reverse else 1, steps=steps)
    attach(states, info, output, finals)
    return output, finals


def run_layers(kind, x, initial, weights, num_layers, bidirectional, p=0.0, training=False, masks=None):
    """The stacking loop: x (T, B, I) -> (output (T, B, D*H), final states tuple of (D*L, B, H)).

    initial: tuple of (D*L, B, H) tensors or None (zeros); weights: D*L tuples (w_ih, w_hh, b_ih, b_hh)
    in torch's order (layer by layer, forward then reverse).
    """
    directions = 2 if bidirectional else 1
    zero = None if initial is not None else zeros(x.shape[1], weights[0][1].shape[1], dtype=x.dtype,
                                                  device=x.device)
    finals = []
    for layer in range(num_layers):
        if layer > 0:
            with scope(f"l{layer}"):
                x = dropout(x, p, training)
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            state = tuple(s[index] for s in initial) if initial is not None else (zero,) * kind.state_size
            label = f"l{layer}{'_reverse' if direction else ''}"
            out, final = _run_direction(kind, x, state, weights[index], bool(direction), masks, label,
                                        initial is None)
            outputs.append(out)
            finals.append(final)
        with scope(f"l{layer}"):
            x = outputs[0] if directions == 1 else cat(outputs, -1)
    return x, tuple(stack([f[i] for f in finals]) for i in range(kind.state_size))


def _lengths_array(lengths, steps, batch, who):
    """Validate `lengths` -> host int64 array (B,)."""
    host = lengths.numpy() if isinstance(lengths, Tensor) else np.asarray(lengths)
    if host.ndim != 1 or (host.size and host.dtype.kind not in "iu"):
        raise ShapeError(f"{who}: lengths must be a 1-D sequence of ints, got {host.dtype} of shape {host.shape}")
    if host.size != batch:
        raise ShapeError(f"{who}: got {host.size} lengths for a batch of {batch}")
    if host.size and (host.min() < 1 or host.max() > steps):
        raise ShapeError(f"{who}: lengths must be in [1, {steps}] (the padded length), got {host.tolist()}")
    return host.astype(np.int64)


def _length_masks(lengths, steps, batch, x, who):
    """Per-step (B, 1) bool masks (None where all are real) and the (T, B, 1) output mask."""
    real = _lengths_array(lengths, steps, batch, who)[None, :] > np.arange(steps)[:, None]  # (T, B)
    device_real = backend.asarray(real[:, :, None], device=x.device)
    step_masks = [None if real[t].all() else device_real[t] for t in range(steps)]
    return step_masks, Tensor(real[:, :, None].astype(x.dtype), device=x.device)


class RNNBase(RecurrentModule):
    """Parameters and forward shared by RNN, LSTM and GRU; `mode` is a key of cells.KINDS."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        who = type(self).__name__
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ShapeError(f"{who}: input_size, hidden_size and num_layers must be positive, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if isinstance(dropout, bool) or not 0.0 <= dropout <= 1.0:
            raise InvalidValueError(f"{who}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{who}: dropout={dropout} acts between layers, so it does nothing with "
                          "num_layers=1", UserWarning, stacklevel=3)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        directions = 2 if bidirectional else 1
        self._weight_names = []  # per layer and direction: the 4 names, biases included even when absent
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[:directions]:
                layer_input = input_size if layer == 0 else hidden_size * directions
                register_cell_parameters(self, f"_l{layer}{suffix}", layer_input, hidden_size,
                                         KINDS[mode].gates, bias)
                self._weight_names.append(tuple(f"{w}_l{layer}{suffix}" for w in
                                                ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        self._init_parameters(device, dtype)

    def flatten_parameters(self):
        """A no-op, for code written for torch's cuDNN layers."""

    @property
    def all_weights(self):
        """[[w_ih, w_hh(, b_ih, b_hh)] per layer and direction], in torch's order."""
        return [[p for p in group if p is not None] for group in self._weights()]

    def _weights(self):
        """(w_ih, w_hh, b_ih, b_hh) per layer and direction; biases None without bias."""
        return [tuple(getattr(self, n) for n in names) for names in self._weight_names]

    _repr_defaults = (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                      ("bidirectional", False))

    # ---- forward -------------------------------------------------------------------------
    def _check_input(self, x):
        layout = f"3 dims ({'B, T' if self.batch_first else 'T, B'}, input_size) or 2 dims (T, input_size) unbatched"
        check_input(type(self).__name__, x, (2, 3), layout, self.input_size, self.weight_ih_l0)
        steps = x.shape[1 if self.batch_first and x.ndim == 3 else 0]
        if steps == 0:
            raise ShapeError(f"{type(self).__name__}: expected at least one time step, got input shape {x.shape}")

    def _check_state(self, hx, x, batched):
        """hx (tuple of tensors or None) -> tuple of (D*L, B, H) tensors or None."""
        if hx is None:
            return None
        who = type(self).__name__
        layers = self.num_layers * (2 if self.bidirectional else 1)
        expected = (layers, x.shape[1], self.hidden_size) if batched else (layers, self.hidden_size)
        names = ("h_0", "c_0") if len(hx) == 2 else ("h_0",)
        for name, h in zip(names, hx):
            if not isinstance(h, Tensor) or h.shape != expected:
                got = h.shape if isinstance(h, Tensor) else type(h).__name__
                raise ShapeError(f"{who}: expected {name} of shape {expected} (D*num_layers, "
                                 f"{'B, ' if batched else ''}hidden_size), got {got}")
        return hx if batched else tuple(h.unsqueeze(1) for h in hx)

    def _forward(self, x, hx, lengths):
        """x as given; hx a tuple or None -> (output, tuple of final states), in the caller's layout.

        Every node made here is labelled "<rnn|lstm|gru>/l{layer}[_reverse]/t{t}" (or /input, /output)
        under the caller's scope, so a rendered graph can group it by layer, direction and time step.
        """
        with scope(type(self).__name__.lower()):
            return self._forward_in_scope(x, hx, lengths)

    def _forward_in_scope(self, x, hx, lengths):
        self._check_input(x)
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        initial = self._check_state(hx, x, batched)
        masks = None
        if lengths is not None:
            masks, out_mask = _length_masks(lengths, x.shape[0], x.shape[1], x, type(self).__name__)
        output, finals = run_layers(KINDS[self.mode], x, initial, self._weights(), self.num_layers, self.bidirectional,
                                    self.dropout, self.training, masks)
        if lengths is not None:
            output = output * out_mask  # padded positions are zero, as after pad_packed_sequence
        if not batched:
            return output.squeeze(1), tuple(f.squeeze(1) for f in finals)
        return (output.transpose(0, 1) if self.batch_first else output), finals


class RNN(RNNBase):
    """A multi-layer Elman RNN, h⟨t⟩ = tanh(x⟨t⟩ W_ih^T + b_ih + h⟨t−1⟩ W_hh^T + b_hh) (or relu).

    Unrolled over the T steps into one graph that `backward()` sweeps (BPTT); every node of step t
    is labelled `rnn/l{k}[_reverse]/t{t}`. Each step is one fused node by default; under
    `with tg.nn.fused(False):` it is built op by op (for a graph drawn with every op).
    Parameters `weight_ih_l{k}[_reverse]` (H, I or D*H), `weight_hh_l{k}[_reverse]` (H, H),
    `bias_ih_l{k}`, `bias_hh_l{k}` (H,) start uniform in ±1/sqrt(H), as torch's.

    Args:
        input_size: I, the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: stacked layers; layer k > 0 reads layer k−1's output. Default 1.
        nonlinearity: "tanh" or "relu". Default "tanh".
        bias: learn b_ih and b_hh. Default True.
        batch_first: input and output are (B, T, *) instead of (T, B, *). Default False.
        dropout: dropout on each layer's output except the last, in train mode. Default 0.
        bidirectional: add a reverse direction per layer (D = 2). Default False.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(T, B, I)`, `(B, T, I)` with batch_first, or `(T, I)` unbatched.
        - **hx** `(D*num_layers, B, H)` initial state, or None for zeros.
        - **lengths** one int per batch element (any order), or None: padded steps keep the state
          and output zeros, as after pad_packed_sequence.

    Outputs:
        - **output** `(T, B, D*H)` (or `(B, T, D*H)`): the last layer's h⟨t⟩ at every step.
        - **h_n** `(D*num_layers, B, H)`: every layer's state after its last (real) step.

    Examples:
        >>> rnn = nn.RNN(10, 20, num_layers=2)
        >>> output, h_n = rnn(tg.randn(5, 3, 10))
        >>> output.shape, h_n.shape
        ((5, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__(rnn_mode(nonlinearity, "RNN"), input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None, lengths=None):
        output, (h_n,) = self._forward(input, None if hx is None else (hx,), lengths)
        return output, h_n


class LSTM(RNNBase):
    """A multi-layer LSTM (Hochreiter & Schmidhuber, 1997), torch's gate order i, f, g, o:

    i, f, g, o = σ, σ, tanh, σ of (x⟨t⟩ W_ih^T + b_ih + h⟨t−1⟩ W_hh^T + b_hh);
    c⟨t⟩ = f ⊙ c⟨t−1⟩ + i ⊙ g;  h⟨t⟩ = o ⊙ tanh(c⟨t⟩).

    Parameters as RNN's with 4H rows (`weight_ih_l0` is (4H, I)); nodes labelled `lstm/l{k}/t{t}`
    (one fused node per step; every gate under `tg.nn.fused(False)`). No `proj_size`.

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: stacked layers. Default 1.
        bias: learn b_ih and b_hh. Default True.
        batch_first: (B, T, *) instead of (T, B, *). Default False.
        dropout: between layers, in train mode. Default 0.
        bidirectional: D = 2. Default False.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(T, B, I)`, `(B, T, I)` with batch_first, or `(T, I)` unbatched.
        - **hx** a tuple `(h_0, c_0)`, each `(D*num_layers, B, H)`, or None for zeros.
        - **lengths** one int per batch element, or None.

    Outputs:
        - **output** `(T, B, D*H)`: the last layer's h⟨t⟩ at every step.
        - **(h_n, c_n)** each `(D*num_layers, B, H)`.

    Examples:
        >>> lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
        >>> output, (h_n, c_n) = lstm(tg.randn(5, 3, 10), lengths=[5, 4, 2])
        >>> output.shape, h_n.shape, c_n.shape
        ((5, 3, 40), (4, 3, 20), (4, 3, 20))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def forward(self, input, hx=None, lengths=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise DTypeError(f"LSTM: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        output, finals = self._forward(input, None if hx is None else tuple(hx), lengths)
        return output, finals


class GRU(RNNBase):
    """A multi-layer GRU (Cho et al., 2014), torch's gate order r, z, n:

    r, z = σ(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T + b_h{r,z});
    n = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn));  h⟨t⟩ = (1 − z) ⊙ n + z ⊙ h⟨t−1⟩.

    Parameters as RNN's with 3H rows; nodes labelled `gru/l{k}/t{t}`.

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: stacked layers. Default 1.
        bias: learn b_ih and b_hh. Default True.
        batch_first: (B, T, *) instead of (T, B, *). Default False.
        dropout: between layers, in train mode. Default 0.
        bidirectional: D = 2. Default False.
        device: where the parameters live.
        dtype: their floating dtype.

    Inputs:
        - **input** `(T, B, I)`, `(B, T, I)` with batch_first, or `(T, I)` unbatched.
        - **hx** `(D*num_layers, B, H)`, or None for zeros.
        - **lengths** one int per batch element, or None.

    Outputs:
        - **output** `(T, B, D*H)`.
        - **h_n** `(D*num_layers, B, H)`.

    Examples:
        >>> gru = nn.GRU(10, 20, batch_first=True)
        >>> output, h_n = gru(tg.randn(3, 5, 10))
        >>> output.shape, h_n.shape
        ((3, 5, 20), (1, 3, 20))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype)

    def forward(self, input, hx=None, lengths=None):
        output, (h_n,) = self._forward(input, None if hx is None else (hx,), lengths)
        return output, h_n


def init_irnn_(module, gain=1.0):
    """IRNN (Le et al. 2015): every recurrent weight of an RNN or RNNCell = gain * I, every bias 0.

    Input weights keep their init. Returns the module.
    """
    if not isinstance(module, (RNN, RNNCell)):
        raise TypeError(f"init_irnn_: expected an RNN or RNNCell, got {type(module).__name__} "
                        "(its recurrent weight is not square)")
    for name, p in module.named_parameters():
        if name.startswith("weight_hh"):
            init.eye_(p, gain)
        elif name.startswith("bias"):
            init.zeros_(p)
    return module
