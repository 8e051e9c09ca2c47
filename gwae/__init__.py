"""Gromov-Wasserstein Autoencoders in PyTorch and fastai, with the baselines, datasets and metrics to judge them

Modules:

- `gwae.boosting`: disentanglement_lib's DCI classifier, scikit-learn's `GradientBoostingClassifier`, re-implemented with numba: the same trees, leaf values and importances, more than ten times faster.
- `gwae.metrics`: Disentanglement metrics with disentanglement_lib's protocols and key names: MIG, DCI, SAP, modularity and explicitness, IRS, unsupervised scores, and the intervention-based BetaVAE and FactorVAE scores.
- `gwae.nets`: Encoders, decoders and the spectral-norm critic of the official GWAE code, for 28, 32 and 64 px images with any channel count, plus MLP versions for vector data.
- `gwae.priors`: The latent priors of GWAE: standard normal, neural (NP), factorized neural (FNP) and Gaussian mixture (GMP), all sampled by reparameterisation so that gradients reach their parameters."""

__version__ = "0.1.0"
