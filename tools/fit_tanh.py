"""Fit the rational tanh that tinygrad_rnn/jit/cells.py evaluates in float32, and report its error.

tanh(x) ~ x * P(x^2) / Q(x^2) on [0, 9], P of degree 5, Q of degree 3 with Q(0) = 1, the relative
error minimised by Sanathanan-Koerner iteration (a linear least-squares fit reweighted by the last
denominator) and then Lawson's reweighting toward the minimax fit. Beyond 9, tanh is 1 to float32
rounding, so inputs are clamped there. Run: python tools/fit_tanh.py
"""
import numpy as np

LIMIT = 9.0
NUM, DEN = 6, 4  # coefficients of P and of Q


def fit(iterations=40, lawson=60):
    x = np.linspace(1e-6, LIMIT, 100_000)
    y = np.tanh(x)
    t = (x / LIMIT) ** 2  # a variable on [0, 1] keeps the least-squares system well conditioned
    q, weight = np.ones_like(x), np.full_like(x, 1 / len(x))
    for k in range(iterations + lawson):
        basis = np.concatenate([(x / y)[:, None] * t[:, None] ** np.arange(NUM),
                                -t[:, None] ** np.arange(1, DEN)], axis=1)
        scale = np.sqrt(weight) / q
        coef, *_ = np.linalg.lstsq(basis * scale[:, None], scale, rcond=None)
        p, qc = coef[:NUM], np.concatenate([[1.0], coef[NUM:]])
        q = np.polyval(qc[::-1], t)
        error = x * np.polyval(p[::-1], t) / q / y - 1
        if k >= iterations:
            weight = weight * np.abs(error)
            weight /= weight.sum()
    # back to polynomials in s = x^2
    return p / LIMIT ** (2 * np.arange(NUM)), qc / LIMIT ** (2 * np.arange(DEN)), np.abs(error).max()


def main():
    p, q, error = fit()
    print("P =", tuple(float(v) for v in p))
    print("Q =", tuple(float(v) for v in q))
    print(f"float64 relative error {error:.2e}")
    x = np.linspace(-12, 12, 2_000_001, dtype=np.float32)
    clamped = np.clip(x, np.float32(-LIMIT), np.float32(LIMIT))
    s = clamped * clamped
    num, den = np.float32(0), np.float32(0)
    for c in p[::-1]:
        num = num * s + np.float32(c)
    for c in q[::-1]:
        den = den * s + np.float32(c)
    approx = np.clip(clamped * num / den, -1, 1)  # as the kernel clamps it
    exact = np.tanh(x.astype(np.float64))
    nonzero = exact != 0

    def ulps(y):
        return (np.abs(y - exact)[nonzero] / np.spacing(np.abs(exact[nonzero]).astype(np.float32))).max()
    print(f"float32 evaluation: max error {np.abs(approx - exact).max():.2e}, {ulps(approx):.1f} ulp "
          f"(numpy's float32 tanh: {ulps(np.tanh(x)):.1f} ulp)")

if __name__ == "__main__":
    main()
