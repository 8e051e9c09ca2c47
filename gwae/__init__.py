"""Gromov-Wasserstein Autoencoders in PyTorch and fastai, with the baselines, datasets and metrics to judge them

Modules:

- `gwae.nets`: Encoders, decoders and the spectral-norm critic of the official GWAE code, for 28, 32 and 64 px images with any channel count, plus MLP versions for vector data."""

__version__ = "0.1.0"
