"""Neural-network building blocks, named and laid out as in torch.nn."""
from . import functional, init, utils  # noqa: F401
from .layers import (GELU, BatchNorm1d, Dropout, Embedding, Flatten, Identity, LayerNorm, Linear,  # noqa: F401
                     LogSoftmax, ModuleDict, ModuleList, ReLU, Sequential, Sigmoid, Tanh)
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss  # noqa: F401
from .module import Module, Parameter
from .cells import (GRUCell, LSTMCell, RNNCell, fused, gru_cell, is_fused, lstm_cell, rnn_relu_cell,  # noqa: F401
                    rnn_tanh_cell, set_fused)
from .rnn import GRU, LSTM, RNN, RNNBase, init_irnn_  # noqa: F401
from .transformer import (MultiheadAttention, Transformer, TransformerDecoder, TransformerDecoderLayer,  # noqa: F401
                          TransformerEncoder, TransformerEncoderLayer)
from . import modules  # noqa: E402,F401  (torch.nn.modules' import paths, after everything they re-export)
