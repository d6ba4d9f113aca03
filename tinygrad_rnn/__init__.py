"""tinygrad_rnn: a small reverse-mode autograd on numpy/cupy for recurrent networks and BPTT."""
from . import autograd, backend, buffers, linalg, ops, optim
from .autograd import (Function, enable_grad, inference_mode, is_anomaly_enabled, is_grad_enabled,
                       is_inference_mode_enabled, no_grad, scope, set_detect_anomaly, set_grad_enabled)
from .backend import (get_array_module, get_default_dtype, get_rng_state, is_available, set_default_dtype,
                      set_rng_state)
from .creation import (arange, as_tensor, eye, from_numpy, full, full_like, manual_seed, ones, ones_like, rand,
                       rand_like, randint, randn, randn_like, tensor, zeros, zeros_like)
from .errors import (AnomalyError, DeviceError, DTypeError, GraphError, InvalidValueError, OutOfRangeError,
                     ShapeError, TinyGradRNNError)
from .gradcheck import gradcheck
from .jitswitch import get_kernels, kernels, set_kernels
from .serialization import CheckpointError, load, save
from .tensor import Tensor, cat, concatenate, matmul, one_hot, stack, where

# torch-style free functions (tinygrad_rnn.exp(x), tinygrad_rnn.sum(x, 1), ...) are the methods.
for _name in ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "clip", "clamp", "maximum", "minimum",
              "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "logsumexp",
              "softmax", "log_softmax", "reshape", "flatten", "permute", "transpose", "unsqueeze",
              "squeeze", "split", "chunk", "gather", "expand", "sin", "cos", "erf", "multinomial", "masked_fill",
              "narrow", "t", "norm", "topk", "sort"):
    globals()[_name] = getattr(Tensor, _name)
del _name

from . import cuda, data, nn, onnx  # noqa: E402  (these build on everything above)
from .runtime import device, get_num_threads, set_num_threads  # noqa: E402

float32 = backend.np.float32
float64 = backend.np.float64
float16 = backend.np.float16
int64 = backend.np.int64
int32 = backend.np.int32
bool_ = backend.np.bool_
# torch's aliases, so that ported code's dtype=torch.float / .to(torch.long) reads the same
float, double, half, long, int = float32, float64, float16, int64, int32  # noqa: A001

__version__ = "0.1.0"
