"""A recurrent layer's whole loop over time in one node, for speed, that a renderer still sees step by step.

A sequence layer (nn.LSTM, GRU, RNN) in fused mode runs one LSTMSequence / GRUSequence /
RNNSequence node per layer and direction instead of a node (and its views) per time step: the
loop is then plain numpy, as a hand-written BPTT is, with nothing per step for the engine to
record, sort or visit. The arithmetic is ops.LSTMStep's (GRUStep's, RNNStep's), through the same
functions in the same order, so the numbers are the same.

The graph a reader sees is the per-step one. The layer tags the node with `Unrolled` (its scope,
the scope serials the steps would have had, and the nodes that consume it), and `expand`, which
autograd.walk calls before it reads a graph, rebuilds exactly what the fused per-step path would
have recorded: a step node with its h (and c) views per step, the layer's output as their Stack,
the final states as the last step's views. It rewires the consumers in place and gives every new
node its row of the saved arrays, so hooks, gradient norms and a later backward run through the
steps and give the same gradients. A node whose arrays backward already freed is expanded
without them (its steps' `saved` is None, as after any backward).
"""
from __future__ import annotations

import itertools
import weakref

from . import autograd, buffers
from .autograd import Function, ScopeLabel, SparseGrad
from .backend import get_array_module, matmul_operand
from .errors import ShapeError
from .ops import (GetItem, GRUStep, LSTMStep, Reshape, RNNStep, Stack, check_cell_dtypes, gru_activate, gru_backward,
                  lstm_activate_, lstm_backward, register, rnn_activate_, rnn_derivative)


def _check(op, proj, h, w_hh, gates):
    check_cell_dtypes(op, proj, h, w_hh)
    hidden = h.shape[-1]
    if proj.ndim != 3 or not proj.shape[0] or h.ndim != 2 or proj.shape[1:] != (h.shape[0], gates * hidden) or \
            w_hh.shape != (gates * hidden, hidden):
        raise ShapeError(f"{op}: expected proj (T, B, {gates}H) with T >= 1, h (B, H), w_hh ({gates}H, H); got proj "
                         f"{tuple(proj.shape)}, h {tuple(h.shape)}, w_hh {tuple(w_hh.shape)}")


def _order(steps, reverse):
    return range(steps - 1, -1, -1) if reverse else range(steps)


# The states live in one (T+1)-row buffer with the initial state in the extra row (row 0, or row T
# when running in reverse; the LSTM's h buffer has one row more, the final c), so that the h_{t-1}
# of all steps are one contiguous (T, B, H) block and the recurrent weight's gradient is one matmul
# over all steps, with no copies: step t writes row t + shift and reads row t + 1 - shift.

def _shift(reverse):
    return 0 if reverse else 1


def _initial_row(steps, reverse):
    return steps if reverse else 0


def _final_row(steps, reverse):
    return 0 if reverse else steps


def _rows(ext, steps, start):
    """The T rows of ext from `start` (shift: the states each step wrote; 1 - shift: those it read)."""
    return ext[start:start + steps]


def _weight_grad(d_pre_all, h_prev_all):
    """sum over t of d_pre[t]^T @ h_prev[t], (G*H, H): one matmul over all T*B rows."""
    return d_pre_all.reshape(-1, d_pre_all.shape[-1]).T @ h_prev_all.reshape(-1, h_prev_all.shape[-1])


@register
class LSTMSequence(Function):
    """proj (T, B, 4H), h0, c0 (B, H), w_hh (4H, H) -> states (T+2, B, H): the h's, the initial one in
    row 0 and step t's in row t+1 (with reverse=True, run from t = T-1 down: step t's in row t, the
    initial one in row T), and the final c in row T+1. The other c's stay inside (backward's), so the
    output's gradient buffer holds the h's only. The steps of ops.LSTMStep in one node.
    `own_proj`: proj is the layer's own input projection, which nothing else reads; the gates are
    then made in its memory (one (T, B, 4H) array fewer to fault in: 4 MiB a step at hidden 128)."""

    def forward(self, proj, h, c, w_hh, w_hh_t=None, reverse=False, own_proj=False):
        _check("lstmsequence", proj, h, w_hh, 4)
        xp = get_array_module(proj)
        steps, shift = proj.shape[0], _shift(reverse)
        w_t = w_hh.T if w_hh_t is None else w_hh_t
        gates = proj if own_proj else buffers.empty_like(proj)
        product = xp.empty(proj.shape[1:], dtype=proj.dtype) if own_proj else None
        hs = buffers.empty((steps + 2,) + h.shape, proj.dtype, proj)
        cs = buffers.empty((steps + 1,) + h.shape, proj.dtype, proj)
        hs[_initial_row(steps, reverse)], cs[_initial_row(steps, reverse)] = h, c
        tanh_c = buffers.empty((steps,) + h.shape, proj.dtype, proj)
        for t in _order(steps, reverse):
            read, write = t + 1 - shift, t + shift
            if own_proj:
                g = gates[t]
                g += xp.matmul(hs[read], w_t, out=product)
            else:
                g = xp.matmul(hs[read], w_t, out=gates[t])
                g += proj[t]
            lstm_activate_(g, cs[read], hs[write], cs[write], tanh_c[t])
        hs[steps + 1] = cs[_final_row(steps, reverse)]
        self.reverse = reverse
        # h0, c0 only for the in-place check, where the per-step ops would save them (h0 for W_hh's gradient)
        self.save_for_backward(gates, tanh_c, hs, cs, h if self.parents[3] is not None else None, c, w_hh)
        return hs

    def backward(self, grad):
        gates, tanh_c, hs, cs, _, _, w_hh = self.saved
        needs = self.needs_input_grad
        steps, shift = gates.shape[0], _shift(self.reverse)
        d_pre_all = gates if self.consume_saved() else buffers.empty_like(gates)  # step t's written over its gates
        d_h, d_c = None, grad[steps + 1]  # the last step's c reaches only the final c
        w_hh = matmul_operand(w_hh)
        for t in reversed(_order(steps, self.reverse)):
            read = t + 1 - shift
            d_h_new = grad[t + shift] if d_h is None else grad[t + shift] + d_h
            d_pre = d_pre_all[t]
            d_c = lstm_backward(gates[t], cs[read], tanh_c[t], d_h_new, d_c, d_pre)
            d_h = d_pre @ w_hh if read != _initial_row(steps, self.reverse) or needs[1] else None
        d_w = _weight_grad(d_pre_all, _rows(hs, steps, 1 - shift)) if needs[3] else None
        first = _initial_row(steps, self.reverse)  # the initial h's own row: a copy of h0
        return (d_pre_all if needs[0] else None, d_h + grad[first] if needs[1] else None,
                d_c if needs[2] else None, d_w)


@register
class GRUSequence(Function):
    """proj (T, B, 3H), h0 (B, H), w_hh (3H, H)[, b_hh (3H,)] -> states (T+1, B, H), rows as
    LSTMSequence's. The steps of ops.GRUStep in one node."""

    def forward(self, proj, h, w_hh, b_hh=None, w_hh_t=None, reverse=False):
        _check("grusequence", proj, h, w_hh, 3)
        (steps, batch), hidden, shift = proj.shape[:2], h.shape[-1], _shift(reverse)
        w_t = w_hh.T if w_hh_t is None else w_hh_t
        ext = buffers.empty((steps + 1,) + h.shape, proj.dtype, proj)
        ext[_initial_row(steps, reverse)] = h
        rz = buffers.empty((steps, batch, 2 * hidden), proj.dtype, proj)
        n, h_n = (buffers.empty((steps,) + h.shape, proj.dtype, proj) for _ in range(2))
        for t in _order(steps, reverse):
            h_t = ext[t + 1 - shift]
            hp = h_t @ w_t
            if b_hh is not None:
                hp += b_hh
            gru_activate(proj[t], h_t, hp, rz[t], n[t], ext[t + shift])
            h_n[t] = hp[:, 2 * hidden:]
        self.reverse = reverse
        self.save_for_backward(rz, n, h_n, ext, h, w_hh)
        return ext

    def backward(self, grad):
        rz, n, h_n, ext, _, w_hh = self.saved
        needs = self.needs_input_grad
        steps, hidden, shift = n.shape[0], n.shape[-1], _shift(self.reverse)
        d_x_all = buffers.empty(n.shape[:2] + (3 * hidden,), grad.dtype, grad)
        d_hp_all = buffers.empty_like(d_x_all)  # the hidden side: d_n times r
        d_h, w_hh = None, matmul_operand(w_hh)
        for t in reversed(_order(steps, self.reverse)):
            read = t + 1 - shift
            d_out = grad[t + shift] if d_h is None else grad[t + shift] + d_h
            d_pre = d_hp_all[t]
            gru_backward(d_out, rz[t], n[t], h_n[t], ext[read], d_pre)
            d_x_all[t] = d_pre
            d_pre[:, 2 * hidden:] *= rz[t, :, :hidden]
            d_h = None
            if read != _initial_row(steps, self.reverse) or needs[1]:
                d_h = d_pre @ w_hh
                d_h += d_out * rz[t, :, hidden:]
        d_w = _weight_grad(d_hp_all, _rows(ext, steps, 1 - shift)) if needs[2] else None
        d_b = d_hp_all.reshape(-1, 3 * hidden).sum(0) if len(needs) == 4 and needs[3] else None
        d_h0 = d_h + grad[_initial_row(steps, self.reverse)] if needs[1] else None
        return d_x_all if needs[0] else None, d_h0, d_w, d_b


@register
class RNNSequence(Function):
    """proj (T, B, H), h0 (B, H), w_hh (H, H) -> states (T+1, B, H) (rows as LSTMSequence's) of
    h_t = tanh or relu(proj[t] + h_{t-1} W_hh^T). The steps of ops.RNNStep in one node."""

    def forward(self, proj, h, w_hh, nonlinearity="tanh", w_hh_t=None, reverse=False):
        _check("rnnsequence", proj, h, w_hh, 1)
        xp = get_array_module(proj)
        steps, shift = proj.shape[0], _shift(reverse)
        w_t = w_hh.T if w_hh_t is None else w_hh_t
        ext = buffers.empty((steps + 1,) + h.shape, proj.dtype, proj)
        ext[_initial_row(steps, reverse)] = h
        for t in _order(steps, reverse):
            pre = xp.matmul(ext[t + 1 - shift], w_t, out=ext[t + shift])
            pre += proj[t]
            rnn_activate_(pre, nonlinearity)
        self.reverse, self.nonlinearity = reverse, nonlinearity
        self.save_for_backward(ext, h if self.parents[2] is not None else None, w_hh)  # h0: as RNNStep saves it
        return ext

    def backward(self, grad):
        ext, _, w_hh = self.saved
        needs = self.needs_input_grad
        xp = get_array_module(grad)
        steps, shift = ext.shape[0] - 1, _shift(self.reverse)
        # every step's activation derivative in one pass first; the loop then makes each step's
        # d_pre in three calls, none allocating: (the next step's d_pre @ w_hh + its output's
        # gradient) * derivative, the order ops.RNNStep computes it in
        d_pre_all = rnn_derivative(_rows(ext, steps, shift), self.nonlinearity,
                                   buffers.empty((steps,) + grad.shape[1:], grad.dtype, grad))
        w_hh, carry = matmul_operand(w_hh), xp.empty(grad.shape[1:], dtype=grad.dtype)
        later = None
        for t in reversed(_order(steps, self.reverse)):
            if later is None:
                d_pre_all[t] *= grad[t + shift]
            else:
                xp.matmul(d_pre_all[later], w_hh, out=carry)
                carry += grad[t + shift]
                d_pre_all[t] *= carry
            later = t
        d_w = _weight_grad(d_pre_all, _rows(ext, steps, 1 - shift)) if needs[2] else None
        d_h0 = d_pre_all[later] @ w_hh + grad[_initial_row(steps, self.reverse)] if needs[1] else None
        return d_pre_all if needs[0] else None, d_h0, d_w


@register
class SequenceOutput(Function):
    """states (rows as LSTMSequence's) -> the layer's output (T, B, H): rows start..start+steps-1 (start
    1, or 0 in reverse; steps = T), a copy: a caller may write into it, and the states are saved for backward."""

    def forward(self, states, start, steps):
        self.in_shape, self.index = states.shape, (slice(start, start + steps),)
        out = buffers.empty((steps,) + states.shape[1:], states.dtype, states)
        out[...] = states[self.index]
        return out

    def backward(self, g):
        return SparseGrad(self.index, g, self.in_shape, False)


# ---- what a reader of the graph sees: the steps -------------------------------------------

class Unrolled:
    """What expand needs besides the node: the scope the layer ran in, its lane label ("l0"), the
    scope serial of each step in the order they ran, the cut on the first step's h (None, "zero",
    "detached"), and weak references to the consumers to rewire (the output, the final h and c)."""

    __slots__ = ("base", "label", "serials", "cut", "output", "finals", "first_seq")

    def __init__(self, base, label, steps, cut):
        self.base, self.label, self.cut = base, label, cut
        self.serials = autograd.reserve_serials(steps)
        self.output, self.finals = None, ()
        self.first_seq = None


NODES_PER_STEP = 3  # what expand makes per step at most: the step node and its h and c views


def reserve_steps(states, info):
    """Sequence numbers for the nodes expand may make, drawn just after the layer's node and before
    its consumers, so that the steps sort between them as if they had run (autograd's order)."""
    if states._ctx is not None:
        info.first_seq = autograd.reserve_sequence(NODES_PER_STEP * len(info.serials))


def attach(states, info, output, finals):
    """Tag the sequence node that made `states` for expansion (a no-op when no graph was recorded)."""
    node = states._ctx
    if node is not None:
        info.output = weakref.ref(output._ctx)
        info.finals = tuple(weakref.ref(f._ctx) for f in finals)
        node.unrolled = info


def expand_all(roots):
    """Expand every tagged sequence node reachable from `roots` (nodes or leaves)."""
    found, seen, stack = [], set(), [r for r in roots if isinstance(r, Function)]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if getattr(node, "unrolled", None) is not None:
            found.append(node)
        stack.extend(p for p in node.parents if isinstance(p, Function) and id(p) not in seen)
    for node in found:
        expand(node)


def _scope(info, t, serial):
    base = info.base
    label = ScopeLabel(f"{info.label}/t{t}" if base is None else f"{base}/{info.label}/t{t}")
    label.parts = (base.parts if base is not None else ()) + ((info.label, serial), (f"t{t}", serial))
    return label


def _recorded(node, op, parents, scope, shape, dtype, saved, role=None, **attrs):
    """Make `node` (new, or a consumer rewired in place) what `apply` would have recorded for op."""
    node = op.__new__(op) if node is None else node
    node.__class__ = op
    node.parents, node.scope, node.shape, node.dtype, node.saved = parents, scope, shape, dtype, saved
    node.saved_versions = ()
    node.role = role
    for name, value in attrs.items():
        setattr(node, name, value)
    return node


def _view(node, op, parent, scope, shape, dtype, role, index=None):
    """The h or c view a fused step hands on: GetItem (0,)/(1,) of an LSTM step, Reshape of a GRU/RNN's."""
    if op is GetItem:
        return _recorded(node, GetItem, (parent,), scope, shape, dtype, (index,), role,
                         in_shape=parent.shape, advanced=False, basic=index)
    return _recorded(node, Reshape, (parent,), scope, shape, dtype, (), role, in_shape=shape)


def _versions(seq, holders, keep):
    """The sequence node's in-place records for the step's saved arrays: holders maps an input
    index of the sequence node to the position in the step's saved tuple (records whose position
    holds nothing are left out)."""
    if keep is None:
        return ()
    return tuple((counter, version, index, holders[index]) for counter, version, index, _ in seq.saved_versions
                 if index in holders and keep[holders[index]] is not None)


def expand(seq):
    """Rewrite the graph around a tagged sequence node into the fused per-step graph (module doc)."""
    info, seq.unrolled = seq.unrolled, None
    lstm = isinstance(seq, LSTMSequence)
    steps = seq.shape[0] - (2 if lstm else 1)
    state_shape = seq.shape[-2:]
    saved = seq.saved
    reverse = seq.reverse
    order = list(_order(steps, reverse))
    last = order[-1]
    finals = [ref() for ref in info.finals]
    h0 = seq.parents[1]
    views = {}  # t -> (h view, c view or None)
    previous = (h0, seq.parents[2]) if lstm else (h0,)
    numbers = itertools.count(info.first_seq)  # each new node's, in the order they would have been made
    for k, t in enumerate(order):
        scope = _scope(info, t, info.serials[k])
        step = _step_node(seq, t, k == 0, previous, scope, saved)
        step._sequence_nr = next(numbers)
        reuse = finals if t == last else [None] * len(previous)
        if lstm:
            state = (_view(reuse[0], GetItem, step, scope, state_shape, seq.dtype, "h", (0,)),
                     _view(reuse[1], GetItem, step, scope, state_shape, seq.dtype, "c", (1,)))
        else:
            state = (_view(reuse[0], Reshape, step, scope, state_shape, seq.dtype, "h"),)
        for view, reused in zip(state, reuse):
            if reused is None:  # a consumer rewired in place keeps its own number
                view._sequence_nr = next(numbers)
        if k == 0 and info.cut is not None:
            state[0].cut = info.cut
        views[t], previous = state, state
    output = info.output()
    if output is not None:
        _recorded(output, Stack, tuple(views[t][0] for t in range(steps)), output.scope, output.shape,
                  output.dtype, (), None, axis=0)


def _step_node(seq, t, first, previous, scope, saved):
    """The fused step node of step t, its saved arrays its rows of the sequence node's."""
    inputs = seq.parents  # (proj, h0[, c0], w_hh[, b_hh])
    state_shape = seq.shape[-2:]
    steps = seq.shape[0] - (2 if isinstance(seq, LSTMSequence) else 1)
    dtype = seq.dtype
    read, write = t + 1 - _shift(seq.reverse), t + _shift(seq.reverse)
    if isinstance(seq, LSTMSequence):
        proj, _, _, w = inputs
        keep = None
        if saved is not None:
            gates, tanh_c, hs, cs, _, _, w_hh = saved
            keep = (gates[t], cs[read], tanh_c[t], hs[read] if w is not None else None,
                    w_hh if previous[0] is not None else None)
        node = _recorded(None, LSTMStep, (proj, previous[0], previous[1], w), scope, (2,) + state_shape, dtype,
                         keep, step=t, x_shape=(steps,) + state_shape[:1] + (4 * state_shape[1],))
        node.saved_versions = _versions(seq, {3: 4, 1: 3, 2: 1} if first else {3: 4}, keep)
        return node
    if isinstance(seq, GRUSequence):
        proj, _, w = inputs[:3]
        keep = None
        if saved is not None:
            rz, n, h_n, ext, _, w_hh = saved
            keep = (rz[t], n[t], h_n[t], ext[read], w_hh if previous[0] is not None else None)
        node = _recorded(None, GRUStep, (proj, previous[0], w) + inputs[3:], scope, state_shape, dtype, keep,
                         step=t, x_shape=(steps,) + state_shape[:1] + (3 * state_shape[1],))
        node.saved_versions = _versions(seq, {2: 4, 1: 3} if first else {2: 4}, keep)
        return node
    proj, _, w = inputs
    keep = None
    if saved is not None:
        ext, _, w_hh = saved
        keep = (ext[write], ext[read] if w is not None else None, w_hh if previous[0] is not None else None)
    node = _recorded(None, RNNStep, (proj, previous[0], w), scope, state_shape, dtype, keep,
                     step=t, x_shape=(steps,) + state_shape, nonlinearity=seq.nonlinearity)
    node.saved_versions = _versions(seq, {2: 2, 1: 1} if first else {2: 2}, keep)
    return node
