"""torch.nn.modules.dropout's names."""
from ..layers import Dropout
