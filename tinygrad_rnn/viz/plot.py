"""The picture of vanishing and exploding gradients: ‖∂L/∂h⟨t⟩‖ against t, per layer and direction."""
from __future__ import annotations


def plot_grad_flow(trace, ax=None, title="gradient reaching each step's hidden state"):
    """A matplotlib figure of trace.hidden_norms(): one line per layer and direction (or cell),
    t on the x axis, ‖∂L/∂h⟨t⟩‖ on a log scale. Returns the figure."""
    try:
        import matplotlib
        if ax is None:
            matplotlib.use("Agg", force=False)  # headless unless the caller already chose a backend
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("viz.plot_grad_flow needs matplotlib: pip install 'tinygrad_rnn[examples]'") from None
    norms = trace.hidden_norms()
    if not norms:
        raise ValueError("plot_grad_flow: the trace has no recurrent hidden states (no RNN/LSTM/GRU layer "
                         "or cell in its graph)")
    if ax is None:
        figure, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    else:
        figure = ax.figure
    for lane, values in norms.items():
        steps = [t for t, v in enumerate(values) if v > 0]
        ax.plot(steps, [values[t] for t in steps], marker="o", markersize=3, label=lane)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # time steps are whole numbers
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂h⟨t⟩‖")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return figure
