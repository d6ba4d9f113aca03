"""torch.nn.modules.rnn's names."""
from ..cells import GRUCell, LSTMCell, RNNCell
from ..rnn import GRU, LSTM, RNN, RNNBase
