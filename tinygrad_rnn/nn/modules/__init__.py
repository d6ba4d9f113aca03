"""torch.nn.modules' import paths (`from torch.nn.modules.rnn import LSTM`), for ported programs:
each submodule re-exports the classes that live elsewhere in tinygrad_rnn.nn."""
from . import (activation, batchnorm, container, dropout, flatten, linear, loss, module, normalization, rnn,
               sparse, transformer)
from .. import *
