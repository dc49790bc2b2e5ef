"""decision-minrnn: Decision-Transformer-style offline RL with minGRU / minLSTM backbones."""

__version__ = "0.1.0"
