"""The one seam between tinygrad_rnn and the array libraries.

Every other module reaches numpy or cupy only through the functions here, so a
new array library (or the numpy-backed stand-in the tests use to catch ops that
call numpy directly) plugs in by registering one `Backend`.
"""
from __future__ import annotations

import copy

import numpy as np

from .errors import DeviceError

_default_dtype = np.dtype(np.float32)


def get_default_dtype():
    return _default_dtype


def set_default_dtype(dtype):
    """Dtype of float tensors made from Python numbers (float32 unless changed)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _default_dtype = dtype


def quietly(fn):
    """fn with numpy's floating-point warnings off, for the ops that can make inf or nan from finite
    inputs (x / 0, log(0), exp(1000)). torch returns those silently, and numpy's RuntimeWarning would
    point into the package rather than at the caller's line. Per op, never process-wide."""
    return np.errstate(all="ignore")(fn)


class Backend:
    """An array namespace (numpy-like module) and the device names it serves."""

    def __init__(self, prefix, xp, array_type, device_of, to_host, from_host, scatter_add=None, storage=None):
        self.prefix = prefix          # "cpu", "cuda", ...
        self.xp = xp                  # the numpy-like module
        self.array_type = array_type  # type of its arrays, for get_array_module
        self.device_of = device_of    # array -> canonical device string
        self.to_host = to_host        # array -> numpy.ndarray
        self.from_host = from_host    # (numpy.ndarray, device string) -> array
        # (target, index, values): target[index] += values, repeated indices adding up
        self.scatter_add = scatter_add or (lambda target, index, values: xp.add.at(target, index, values))
        # array -> the object owning its memory: two arrays share storage when these are the same object
        self.storage = storage or _owner


def _owner(array):
    base = array.base  # numpy and cupy point a view's base at the array owning the memory
    return array if base is None else base


_cpu = Backend("cpu", np, np.ndarray, lambda a: "cpu", lambda a: a, lambda a, d: a)
_by_prefix = {"cpu": _cpu}
_by_type = {np.ndarray: _cpu, np.generic: _cpu}  # numpy scalars appear mid-backward
_lazy = {}  # prefix -> loader returning a Backend, called on first use


def register_backend(backend=None, *, prefix=None, loader=None):
    """Add a backend now, or a loader that builds it the first time its prefix is asked for."""
    if backend is not None:
        _by_prefix[backend.prefix] = backend
        _by_type[backend.array_type] = backend
    else:
        _lazy[prefix] = loader


def _load_cupy():
    try:
        import cupy
    except ImportError as e:
        raise DeviceError(
            "device 'cuda' needs cupy, which is not installed "
            "(pip install 'tinygrad_rnn[cuda]', or the cupy wheel matching your CUDA)") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # cupy raises its own CUDARuntimeError when no driver is present
        raise DeviceError(f"device 'cuda': cupy is installed but no GPU is usable ({e})") from e
    if count == 0:
        raise DeviceError("device 'cuda': cupy is installed but no GPU was found")

    def from_host(a, device):
        with cupy.cuda.Device(_device_index(device)):
            return cupy.asarray(a)

    import cupyx  # scatter_add: cupy's ufunc.at exists only in recent releases

    return Backend("cuda", cupy, cupy.ndarray, lambda a: f"cuda:{a.device.id}",
                   lambda a: a.get(), from_host, scatter_add=cupyx.scatter_add)


register_backend(prefix="cuda", loader=_load_cupy)


def _device_index(device):
    _, _, index = device.partition(":")
    return int(index) if index else 0


def canonical_device(device) -> str:
    """'cpu' -> 'cpu'; 'cuda' -> 'cuda:0'; validates the name."""
    if device is None:
        return "cpu"
    device = str(device)
    prefix, sep, index = device.partition(":")
    if prefix not in _by_prefix and prefix not in _lazy:
        known = sorted(set(_by_prefix) | set(_lazy))
        raise DeviceError(f"unknown device {device!r}; known devices: {', '.join(known)}")
    if sep and not index.isdigit():
        raise DeviceError(f"bad device index in {device!r}")
    if prefix == "cpu":
        return "cpu"
    return f"{prefix}:{index or 0}"


def backend_for(device) -> Backend:
    prefix = canonical_device(device).partition(":")[0]
    backend = _by_prefix.get(prefix)
    if backend is None:
        register_backend(_lazy[prefix]())
        backend = _by_prefix[prefix]
    return backend


def is_available(device) -> bool:
    try:
        backend_for(device)
        return True
    except DeviceError:
        return False


def xp_for(device):
    """The array module for a device name."""
    return backend_for(device).xp


def _backend_of(array) -> Backend:
    backend = _by_type.get(type(array))
    if backend is None:
        for array_type, b in _by_type.items():
            if isinstance(array, array_type):
                return b
        raise TypeError(f"not an array of any known backend: {type(array).__name__}")
    return backend


NUMPY_SCALARS = frozenset(np.sctypeDict.values()) - {np.ndarray}


def ensure_array(value):
    """numpy turns 0-d results into scalars (np.float32); tensors always hold arrays."""
    return np.asarray(value) if type(value) in NUMPY_SCALARS else value


def get_array_module(array):
    """numpy for numpy arrays, cupy for cupy arrays (DeZero's helper of the same name)."""
    return _backend_of(array).xp


def on_host(array) -> bool:
    """Whether `array` is a plain numpy array (host memory, numpy's kernels)."""
    return type(array) is np.ndarray


def device_of(array) -> str:
    return _backend_of(array).device_of(array)


def to_numpy(array) -> np.ndarray:
    return _backend_of(array).to_host(array)


def is_array(value) -> bool:
    """An array of a registered backend (numpy, cupy, ...)."""
    return type(value) in _by_type or any(isinstance(value, t) for t in _by_type)


def host_array(value) -> np.ndarray:
    """numpy view/copy of anything array-like: an array of any backend, a tinygrad_rnn Tensor,
    or a foreign tensor with .detach()/.cpu()/.numpy() (a torch state_dict entry)."""
    data = getattr(value, "data", None)
    if data is not None and is_array(data):  # a Tensor
        value = data
    if is_array(value):
        return to_numpy(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


def to_device(array, device):
    """Move an array to a device (no copy when it is already there)."""
    device = canonical_device(device)
    if device_of(array) == device:
        return array
    host = to_numpy(array)
    return backend_for(device).from_host(host, device)


def asarray(data, dtype=None, device="cpu", copy=False):
    """Make an array on `device` from Python data, a numpy array or an array of any backend.

    copy=False shares memory where it can; copy=True always gives a fresh array."""
    device = canonical_device(device)
    if type(data) in NUMPY_SCALARS:  # a numpy scalar counts as a cpu array, but tensors hold 0-d arrays
        data = np.asarray(data)
    if is_array(data):
        moved = to_device(data, device)
        if dtype is not None and moved.dtype != dtype:
            return moved.astype(dtype)
        return moved.copy() if copy and moved is data else moved
    host = np.asarray(data, dtype=dtype)
    return backend_for(device).from_host(host, device)


def storage(array):
    """The object owning `array`'s memory (itself, or the array it is a view of)."""
    return _backend_of(array).storage(array)


def matmul_operand(matrix):
    """A copy of the 2-d `matrix` for a loop that multiplies by it many times: C-ordered, and on the
    host with each row padded to an odd number of 64-byte cache lines. On a row stride of a power of
    two (a weight 128 or 512 floats wide) the lines of a column block fall into the same cache sets,
    and OpenBLAS's matmul by it runs 10 to 35% slower (32x512 by 512x2048 in float32: 2.16 against
    1.84 ms; docs/performance.md). Other backends get a plain contiguous copy."""
    backend = _backend_of(matrix)
    if backend is not _cpu:
        return backend.xp.ascontiguousarray(matrix)
    rows, cols = matrix.shape
    lines = -(-cols * matrix.itemsize // 64)
    lines += 1 - lines % 2
    padded = np.empty((rows, lines * 64 // matrix.itemsize), dtype=matrix.dtype)[:, :cols]
    # a transposed view copied whole reads a new cache line per element: in panels of 128 of its
    # columns the lines stay cached (w_hh.T at hidden 512: 1.8 against 10 ms)
    panel = max(cols, 1) if matrix.flags.c_contiguous else 128
    for start in range(0, cols, panel):
        padded[:, start:start + panel] = matrix[:, start:start + panel]
    return padded


def scatter_add(target, index, values):
    """target[index] += values, adding repeated indices up (numpy's ufunc.at)."""
    _backend_of(target).scatter_add(target, index, values)
    return target


# Host-side random numbers: generating on the host and moving keeps a seed's
# stream identical on every device.
_rng = np.random.default_rng()


def manual_seed(seed: int):
    global _rng
    _rng = np.random.default_rng(seed)


def host_rng() -> np.random.Generator:
    return _rng


def get_rng_state() -> dict:
    """The global generator's state (numpy's bit-generator state dict, plain ints and strings, so
    tg.save can checkpoint it): with set_rng_state, a resumed run draws what it would have drawn."""
    return copy.deepcopy(_rng.bit_generator.state)


def set_rng_state(state: dict):
    """Restore what get_rng_state returned."""
    if not isinstance(state, dict) or "bit_generator" not in state:
        raise TypeError(f"set_rng_state: expected the dict get_rng_state returns, got {type(state).__name__}")
    _rng.bit_generator.state = copy.deepcopy(state)
