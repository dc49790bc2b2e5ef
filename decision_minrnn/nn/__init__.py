"""Recurrent core: scans, minGRU / minLSTM cells, residual blocks and stacks."""

from .blocks import BlockState, CausalDepthwiseConv, MinRNNStack, ResidualBlock
from .cells import MinGRU, MinLSTM, g, log_g
from .dropout import Dropout
from .scan import AUTO_METHOD, SCAN_METHODS, linear_scan, scan_chunked, scan_log, scan_sequential

__all__ = [
    "AUTO_METHOD",
    "SCAN_METHODS",
    "BlockState",
    "CausalDepthwiseConv",
    "Dropout",
    "MinGRU",
    "MinLSTM",
    "MinRNNStack",
    "ResidualBlock",
    "g",
    "linear_scan",
    "log_g",
    "scan_chunked",
    "scan_log",
    "scan_sequential",
]
