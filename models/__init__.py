"""AFP (approximate fixed-point) RNN language models: config, module, training and checkpoints.

This package must not import k2: it also runs on machines with only PyTorch.
"""
