"""numba's JIT kernels: what `tg.set_kernels("numba")` runs instead of the numpy routines marked with
jitswitch.jit_kernel, each under the same name. Each takes that routine's arguments and returns
NotImplemented for what it does not take (the switch then runs numpy's routine). Importing this
package imports numba, so only set_kernels does."""
from .adam import adam_update_
from .cells import gru_activate, gru_backward, lstm_activate_, lstm_backward

__all__ = ["adam_update_", "gru_activate", "gru_backward", "lstm_activate_", "lstm_backward"]
