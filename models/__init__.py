"""AFP (approximate fixed-point) RNN language models: config, module, training and checkpoints.

This package must not import k2: it also runs on machines with only PyTorch.
"""
from .cpu_gemm import prefer_avx2_mkl

prefer_avx2_mkl()  # before any matrix product: the fast MKL path on AMD CPUs (models/cpu_gemm.py)
