"""decision-minrnn: Decision-Transformer-style offline RL with minGRU / minLSTM backbones."""

__version__ = "0.1.0"
__all__ = ["Policy", "load_policy"]


def __getattr__(name):
    # Lazy, so that `import decision_minrnn` (and the CLI's --help) does not pay for importing torch.
    if name in __all__:
        from . import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'decision_minrnn' has no attribute {name!r}")
