"""Gromov-Wasserstein Autoencoders in PyTorch and fastai, with the baselines, datasets and metrics to judge them"""

__version__ = "0.1.0"
