"""The recurrent cells' pointwise math compiled by numba: the optional JIT kernels behind
`tg.set_kernels("numba")` (jitswitch.py selects them; ops.py's numpy functions of the same names
are the default and the reference these are tested against).

Why it pays: numpy runs an LSTM step's gate math as some twenty passes over (B, H) arrays, each a
call, a temporary and, for a gate's slice of the (B, 4H) gates, a strided walk. Here each row is one
pass per activation and one for the rest, in the CPU's vector registers (hidden 128, batch 32:
forward 36 -> 8 us, backward 48 -> 10 us a step; docs/performance.md).

numba's own tanh and exp are scalar libm calls, which LLVM cannot vectorise (185 us for that step's
forward), so tanh is a rational function (tools/fit_tanh.py fits it: 3.4e-7 at most from tanh,
5.7 float32 ulp, against numpy's 1.4), and the sigmoid is (tanh(x/2) + 1) / 2 as in ops._sigmoid_.
The approximation is float32's, so only float32 arrays come here; float64 (gradcheck's) and every
other dtype stay on numpy. error_model="numpy" lets a division vectorise (Python's model checks
each divisor for zero); fastmath allows only contraction into FMAs, so nan and inf pass through as
numpy passes them.
"""
from __future__ import annotations

import numpy as np

from .compile import njit

_jit = njit(nogil=True, error_model="numpy", fastmath={"contract"})

_f = np.float32
_LIMIT, _HALF, _ONE = _f(9.0), _f(0.5), _f(1.0)  # tanh(9) is 1 to float32 rounding
_P0, _P1, _P2, _P3, _P4, _P5 = (_f(0.9999999411789793), _f(0.12919268066257172), _f(0.002920804560768069),
                                _f(9.2678124213924e-06), _f(-1.2781614646994478e-08), _f(1.8258232837070284e-11))
_Q1, _Q2, _Q3 = _f(0.4625255194271639), _f(0.023763343236193366), _f(0.00022810611870387396)


@_jit
def _tanh(x):
    # comparisons, not min/max: numba's min and max branch on nan, which stops vectorisation
    x = _LIMIT if x > _LIMIT else x
    x = -_LIMIT if x < -_LIMIT else x
    s = x * x
    y = x * (((((_P5 * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0) / (((_Q3 * s + _Q2) * s + _Q1) * s + _ONE)
    # near the clamp the fit rounds to 1 + 1 ulp: past 1, a sigmoid exceeds 1 and 1 - tanh^2 turns negative
    y = _ONE if y > _ONE else y
    return -_ONE if y < -_ONE else y


@_jit
def _sigmoid(x):
    return _HALF * _tanh(_HALF * x) + _HALF


# each loop runs over one contiguous 1-d slice from 0: LLVM vectorises those, not a loop over a
# gate's columns from an offset of the row

@_jit
def _sigmoid_(a):
    for j in range(a.shape[0]):
        a[j] = _sigmoid(a[j])


@_jit
def _tanh_(a):
    for j in range(a.shape[0]):
        a[j] = _tanh(a[j])


@_jit
def _lstm_state(i, f, g, o, c, c_out, tanh_c_out, h_out):
    for j in range(c.shape[0]):
        c_new = f[j] * c[j] + i[j] * g[j]
        c_out[j] = c_new
        t = _tanh(c_new)
        tanh_c_out[j] = t
        h_out[j] = o[j] * t


@_jit
def _lstm_activate(gates, c, h_out, c_out, tanh_c_out):
    hidden = c.shape[1]
    for b in range(c.shape[0]):
        row = gates[b]
        _sigmoid_(row[:2 * hidden])
        _tanh_(row[2 * hidden:3 * hidden])
        _sigmoid_(row[3 * hidden:])
        _lstm_state(row[:hidden], row[hidden:2 * hidden], row[2 * hidden:3 * hidden], row[3 * hidden:],
                    c[b], c_out[b], tanh_c_out[b], h_out[b])


@_jit
def _lstm_cell_grads(i, f, g, o, c, tanh_c, d_h, d_c_new, d_i, d_f, d_g, d_o, d_c_prev):
    for j in range(c.shape[0]):
        t = tanh_c[j]
        d_c = (_ONE - t * t) * o[j] * d_h[j] + d_c_new[j]
        d_c_prev[j] = d_c * f[j]
        gi, gf, gg, go = i[j], f[j], g[j], o[j]  # all read before any write: d_i.. may be the gates
        d_i[j] = d_c * gg * gi * (_ONE - gi)
        d_f[j] = d_c * c[j] * gf * (_ONE - gf)
        d_g[j] = d_c * gi * (_ONE - gg * gg)
        d_o[j] = d_h[j] * t * go * (_ONE - go)


@_jit
def _lstm_backward(gates, c, tanh_c, d_h, d_c_new, d_pre, d_c_prev):
    hidden = c.shape[1]
    for b in range(c.shape[0]):
        row, d_row = gates[b], d_pre[b]
        _lstm_cell_grads(row[:hidden], row[hidden:2 * hidden], row[2 * hidden:3 * hidden], row[3 * hidden:],
                         c[b], tanh_c[b], d_h[b], d_c_new[b], d_row[:hidden], d_row[hidden:2 * hidden],
                         d_row[2 * hidden:3 * hidden], d_row[3 * hidden:], d_c_prev[b])


@_jit
def _gru_state(x_rz, hp_rz, x_n, hp_n, h, rz, n_out, h_out):
    hidden = h.shape[0]
    for j in range(2 * hidden):
        rz[j] = _sigmoid(hp_rz[j] + x_rz[j])
    for j in range(hidden):
        n = _tanh(rz[j] * hp_n[j] + x_n[j])
        n_out[j] = n
        h_out[j] = (h[j] - n) * rz[hidden + j] + n


@_jit
def _gru_activate(x, h, hp, rz_out, n_out, h_out):
    hidden = h.shape[1]
    for b in range(h.shape[0]):
        _gru_state(x[b, :2 * hidden], hp[b, :2 * hidden], x[b, 2 * hidden:], hp[b, 2 * hidden:], h[b], rz_out[b],
                   n_out[b], h_out[b])


@_jit
def _gru_cell_grads(grad, r, z, n, h_n, h, d_r, d_z, d_n):
    for j in range(n.shape[0]):
        nj, rj, zj, gj = n[j], r[j], z[j], grad[j]
        dn = gj * (_ONE - zj) * (_ONE - nj * nj)
        d_n[j] = dn
        d_r[j] = dn * h_n[j] * rj * (_ONE - rj)
        d_z[j] = gj * (h[j] - nj) * zj * (_ONE - zj)


@_jit
def _gru_backward(grad, rz, n, h_n, h, d_pre):
    hidden = n.shape[1]
    for b in range(n.shape[0]):
        _gru_cell_grads(grad[b], rz[b, :hidden], rz[b, hidden:], n[b], h_n[b], h[b], d_pre[b, :hidden],
                        d_pre[b, hidden:2 * hidden], d_pre[b, 2 * hidden:])


# ---- what ops' functions call: the same arguments as theirs --------------------------------

_FLOAT32 = np.dtype(np.float32)  # builtin dtypes are singletons: `is` is the cheap test (a byte-swapped
                                 # or metadata-carrying float32 fails it and goes to numpy: still right)


def _fits(arrays, widths, state, writes):
    """Whether the arrays are float32 numpy arrays of shapes (B, w * H) for the widths w, (B, H) the
    state's shape, those at the positions `writes` writable: what the kernels take (a broadcast
    operand, another dtype or a read-only output goes to numpy instead, which says what is wrong).
    A plain loop: this runs twice a time step, and a generator cost more than the kernel's call."""
    if len(state) != 2:
        return False
    batch, hidden = state
    for a, w in zip(arrays, widths):
        if type(a) is not np.ndarray or a.dtype is not _FLOAT32 or a.shape != (batch, w * hidden):
            return False
    return all(arrays[k].flags.writeable for k in writes)


def _entry(kernel, widths, state, writes):
    def run(*args):
        if not _fits(args, widths, args[state].shape, writes):
            return NotImplemented
        kernel(*args)
        return None
    return run


# argument widths in units of H, as the numpy functions' docstrings give the shapes; what each writes
lstm_activate_ = _entry(_lstm_activate, (4, 1, 1, 1, 1), state=1, writes=(0, 2, 3, 4))
gru_activate = _entry(_gru_activate, (3, 1, 3, 2, 1, 1), state=1, writes=(3, 4, 5))
gru_backward = _entry(_gru_backward, (1, 2, 1, 1, 1, 3), state=2, writes=(5,))


def lstm_backward(gates, c, tanh_c, d_h_new, d_c_new, d_pre):
    if not _fits((gates, c, tanh_c, d_h_new, d_c_new, d_pre), (4, 1, 1, 1, 1, 4), c.shape, writes=(5,)):
        return NotImplemented
    d_c_prev = np.empty(c.shape, np.float32)
    _lstm_backward(gates, c, tanh_c, d_h_new, d_c_new, d_pre, d_c_prev)
    return d_c_prev
