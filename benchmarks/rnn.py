"""Training step of a character-level LSTM, GRU or RNN: tinygrad_rnn against torch and a hand-written
numpy floor.

    python benchmarks/rnn.py [--cells lstm gru rnn] [--steps 10] [--hidden 128 512] [--threads N]

Model: one-hot characters (vocab 65) -> LSTM/GRU/RNN(65, hidden) -> Linear(hidden, 65) -> cross-entropy
(mean over batch 32 x 64 steps); then clip_grad_norm_(5) and an Adam step. All float32.
Implementations, on the same weights and data:
  tinygrad_rnn           nn.LSTM (GRU, RNN), nn.Linear, cross_entropy, clip_grad_norm_, optim.Adam: the default,
                         each layer's loop over time in one node (tinygrad_rnn/sequence.py)
  tinygrad_rnn numba kernels  the same under tg.kernels("numba"): the gate math and Adam's update
                         JIT-compiled (tinygrad_rnn/jit/), when numba is installed (--no-jit: left out)
  tinygrad_rnn op-by-op  the same under tg.nn.fused(False): a node per gate
  numpy manual           numpy_lstm.py / numpy_gru_rnn.py: hand-written BPTT, the floor for a numpy engine
  torch nn.LSTM          the fused C++ layer (own block)
  torch LSTMCell loop    nn.LSTMCell (GRUCell, RNNCell) called in a Python loop over time (own block)
The numpy-based ones take turns round by round; torch runs in its own block afterwards, with as
many threads as numpy's BLAS (--threads sets both). Before timing, each numpy floor's gradients are
checked against tinygrad_rnn's in float64.
"""
import numpy as np
import numpy_gru_rnn
import numpy_lstm
from common import parser as common_parser
from common import banner, blas_threads, import_torch, jit_row, report, time_ms, under

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim

VOCAB, BATCH, STEPS, CLIP, LR = 65, 32, 64, 5.0, 2e-3
# cell -> (layer class name in nn / torch.nn, cell class name, hand-written numpy loss_and_grads)
CELLS = {"lstm": ("LSTM", "LSTMCell", numpy_lstm.loss_and_grads),
         "gru": ("GRU", "GRUCell", numpy_gru_rnn.gru_loss_and_grads),
         "rnn": ("RNN", "RNNCell", numpy_gru_rnn.rnn_loss_and_grads)}


class CharRNN(nn.Module):
    def __init__(self, hidden, cell="lstm"):
        super().__init__()
        self.lstm = getattr(nn, CELLS[cell][0])(VOCAB, hidden)  # named lstm for every cell: one name map
        self.decoder = nn.Linear(hidden, VOCAB)

    def forward(self, inputs):
        out, _ = self.lstm(inputs)
        return self.decoder(out.reshape(-1, out.shape[-1]))


CharLSTM = CharRNN  # benchmarks/memory.py and older scripts


def numpy_name(name):
    """'lstm.weight_ih_l0' -> 'weight_ih', 'decoder.bias' -> 'bias' (numpy_lstm's names; torch's cell names)."""
    attr = name.split(".")[-1]
    return attr[:-3] if attr.endswith("_l0") else attr


def numpy_params(model):
    """Our model's weights under numpy_lstm's names, as fresh arrays."""
    return {numpy_name(k): np.array(v) for k, v in model.state_dict().items()}


def make_data(rng, dtype=np.float32, steps=STEPS, batch=BATCH):
    tokens = rng.integers(0, VOCAB, size=(steps + 1, batch))
    inputs = np.eye(VOCAB, dtype=dtype)[tokens[:-1]]
    return inputs, tokens[1:]


# ---- one training step per implementation ------------------------------------------------

def tinygrad_step(hidden, inputs, targets, cell="lstm"):
    model = CharRNN(hidden, cell)
    opt = optim.Adam(model.parameters(), lr=LR)
    x, y = tg.tensor(inputs), tg.tensor(targets.reshape(-1))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        return loss.item()
    return step, model


def torch_step(torch, recurrent, inputs, targets, weights):
    """recurrent: torch's fused layer (nn.LSTM, GRU, RNN) or its cell (called in a Python loop over time)."""
    hidden = recurrent.hidden_size
    decoder = torch.nn.Linear(hidden, VOCAB)
    _load_torch(torch, recurrent, decoder, weights)
    params = list(recurrent.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    x, y = torch.tensor(inputs), torch.tensor(targets.reshape(-1))

    def sequence():
        if isinstance(recurrent, torch.nn.RNNBase):
            return recurrent(x)[0]
        lstm = isinstance(recurrent, torch.nn.LSTMCell)
        state = (torch.zeros(BATCH, hidden),) * 2 if lstm else torch.zeros(BATCH, hidden)
        outputs = []
        for t in range(x.shape[0]):
            state = recurrent(x[t], state)
            outputs.append(state[0] if lstm else state)
        return torch.stack(outputs)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(decoder(sequence().reshape(-1, hidden)), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        return loss.item()
    return step


def _load_torch(torch, recurrent, decoder, weights):
    with torch.no_grad():
        for name, p in recurrent.named_parameters():
            p.copy_(torch.tensor(weights[numpy_name(name)]))
        decoder.weight.copy_(torch.tensor(weights["weight"]))
        decoder.bias.copy_(torch.tensor(weights["bias"]))


def numpy_step(weights, inputs, targets, cell="lstm"):
    params = {k: v.copy() for k, v in weights.items()}
    opt = numpy_lstm.Adam(params, lr=LR)
    loss_and_grads = CELLS[cell][2]

    def step():
        loss, grads = loss_and_grads(params, inputs, targets)
        numpy_lstm.clip_grad_norm_(grads, CLIP)
        opt.step(grads)
        return loss
    return step


# ---- checks and timing ---------------------------------------------------------------------

def check_numpy_floor_gradients(cell="lstm"):
    """The hand-written BPTT must compute what tinygrad_rnn computes (float64, small sizes)."""
    model = CharRNN(16, cell).double()
    inputs, targets = make_data(np.random.default_rng(1), np.float64, steps=9, batch=4)
    loss = nn.functional.cross_entropy(model(tg.tensor(inputs)), tg.tensor(targets.reshape(-1)))
    loss.backward()
    ref_loss, grads = CELLS[cell][2](numpy_params(model), inputs, targets)
    np.testing.assert_allclose(ref_loss, loss.item(), rtol=1e-12)
    ours = {numpy_name(name): p.grad.numpy() for name, p in model.named_parameters()}
    assert set(grads) == set(ours)
    for name, grad in ours.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-9, atol=1e-12, err_msg=name)


def main():
    parser = common_parser(__doc__, steps=10)
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"], choices=sorted(CELLS))
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--no-op-by-op", action="store_true", help="leave out the tg.nn.fused(False) row")
    args = parser.parse_args()

    threads = blas_threads(args.threads)
    torch = import_torch(threads)
    banner(threads, torch)
    jit = jit_row(args)
    for cell in args.cells:
        check_numpy_floor_gradients(cell)
    print(f"char-RNN training step: vocab {VOCAB}, batch {BATCH}, seq {STEPS}, float32, Adam + clip {CLIP}; "
          f"median (min) of {args.steps} steps; numpy floors' gradients checked against tinygrad_rnn (float64)")
    for cell, hidden in ((c, h) for c in args.cells for h in args.hidden):
        layer_name, cell_name, _ = CELLS[cell]
        tg.manual_seed(0)
        inputs, targets = make_data(np.random.default_rng(0))
        ours_step, model = tinygrad_step(hidden, inputs, targets, cell)
        weights = numpy_params(model)  # copied before any step: every implementation starts equal
        steps = {"numpy manual": numpy_step(weights, inputs, targets, cell), "tinygrad_rnn": ours_step}
        variants = {"tinygrad_rnn numba kernels": jit} if jit else {}
        if not args.no_op_by_op:
            variants["tinygrad_rnn op-by-op"] = lambda: nn.fused(False)
        for name, mode in variants.items():
            variant_step, variant_model = tinygrad_step(hidden, inputs, targets, cell)
            variant_model.load_state_dict(model.state_dict())
            steps[name] = under(mode, variant_step)
        first_losses = {name: step() for name, step in steps.items()}  # same weights: same first loss
        results = time_ms(steps, args.steps, args.warmup)
        if torch is not None:
            torch_steps = {f"torch nn.{layer_name}": torch_step(torch, getattr(torch.nn, layer_name)(VOCAB, hidden),
                                                              inputs, targets, weights),
                           f"torch {cell_name} loop": torch_step(torch, getattr(torch.nn, cell_name)(VOCAB, hidden),
                                                                inputs, targets, weights)}
            first_losses.update({name: step() for name, step in torch_steps.items()})
            for name, step in torch_steps.items():  # each in its own block
                results.update(time_ms({name: step}, args.steps, args.warmup))
        spread = max(first_losses.values()) - min(first_losses.values())
        print(f"\n{cell_name[:-4]} hidden {hidden} (first-step losses agree to {spread:.1e})")
        report(results, "numpy manual", f"torch nn.{layer_name}" if torch is not None else None)


if __name__ == "__main__":
    main()
