"""Tiny models and data registered for the trainer and CLI tests (import by name in a run config's `imports`)."""
import time
from dataclasses import dataclass

import torch
from torch import nn
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from gwae.core import Config, param
from gwae.models import ExtraStep, OptimizerConfig, RepresentationModel
from gwae.train import register_data, register_model


@dataclass
class TinyCfg(Config):
    z_dim: int = param(2, 'latent size', ge=1)
    critic_steps: int = param(2, 'critic updates per main step (0: no critic)', ge=0)
    nan_at_step: int = param(-1, 'make the kl term NaN at this step (-1: never)')
    sleep: float = param(0.0, 'seconds to sleep per loss call (to interrupt a run mid-epoch)', ge=0)


class TinyCriticAE(RepresentationModel):
    "A Gaussian autoencoder on 1x4x4 images with a latent critic trained by an `ExtraStep`."
    def __init__(self, x_shape, cfg):
        super().__init__()
        self.cfg, self.z_dim, self.optimizer = cfg, cfg.z_dim, OptimizerConfig('adam', lr=1e-2)
        self.enc, self.dec = nn.Linear(16, 2 * cfg.z_dim), nn.Linear(cfg.z_dim, 16)
        self.critic = nn.Sequential(nn.Linear(cfg.z_dim, 8), nn.ReLU(), nn.Linear(8, 1))

    def encode(self, x): return self.enc(x.flatten(1)).chunk(2, dim=1)
    def decode(self, z): return torch.sigmoid(self.dec(z)).view(-1, 1, 4, 4)

    def loss(self, x):
        if self.cfg.sleep: time.sleep(self.cfg.sleep)
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = (x - self.decode(z)).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        if self.step == self.cfg.nan_at_step: kl = kl * float('nan')
        adv = -self.critic(z).mean() if self.cfg.critic_steps else torch.zeros(())
        return dict(loss=rec + kl + 0.1 * adv, rec=rec, kl=kl, adv=adv)

    def critic_loss(self, x):
        with torch.no_grad(): z = self.embed(x, sample=True)
        gap = self.critic(z).mean() - self.critic(torch.randn_like(z)).mean()
        return dict(loss=gap + self.critic[0].weight.pow(2).sum(), gap=gap)

    def extra_steps(self):
        if not self.cfg.critic_steps: return []
        return [ExtraStep('critic', self.critic.parameters(), OptimizerConfig('rmsprop', lr=1e-2), self.critic_loss, self.cfg.critic_steps)]


@dataclass
class BlobsCfg(Config):
    n_train: int = param(256, 'training images', ge=1)
    n_valid: int = param(64, 'validation images', ge=1)


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, 16, (n,), generator=g)
    x = torch.full((n, 16), 0.1).scatter(1, pos[:, None], 0.9)
    return torch.utils.data.TensorDataset(x.view(n, 1, 4, 4), pos)


def _loaders(train, valid, batch_size):
    "Shuffled full training batches and in-order validation batches."
    return DataLoaders(DataLoader(train, bs=batch_size, shuffle=True, drop_last=True), DataLoader(valid, bs=batch_size))


def blobs_dls(cfg, batch_size, seed): return _loaders(_blobs(cfg.n_train, seed), _blobs(cfg.n_valid, seed + 1), batch_size)


register_model('test_tiny', TinyCfg, TinyCriticAE)
register_data('test_blobs', BlobsCfg, blobs_dls)


@dataclass
class VectorsCfg(Config):
    n: int = param(64, 'items per split', ge=1)
    dim: int = param(12, 'vector length', ge=1)


def vectors_dls(cfg, batch_size, seed):
    def split(s):
        x = torch.rand(cfg.n, cfg.dim, generator=torch.Generator().manual_seed(s))
        return torch.utils.data.TensorDataset(x, torch.zeros(cfg.n, dtype=torch.long))
    return _loaders(split(seed), split(seed + 1), batch_size)


register_data('test_vectors', VectorsCfg, vectors_dls)


@dataclass
class SquaresCfg(Config):
    n: int = param(32, 'images per split', ge=1)
    size: int = param(28, 'image side', ge=8)


def squares_dls(cfg, batch_size, seed):
    "Bright squares at random places on dark 1-channel images."
    def split(s):
        g = torch.Generator().manual_seed(s)
        x = torch.zeros(cfg.n, 1, cfg.size, cfg.size)
        for i, (r, c) in enumerate(torch.randint(0, cfg.size - 6, (cfg.n, 2), generator=g).tolist()): x[i, 0, r:r + 6, c:c + 6] = 1
        return torch.utils.data.TensorDataset(x, torch.zeros(cfg.n, dtype=torch.long))
    return _loaders(split(seed), split(seed + 1), batch_size)


register_data('test_squares', SquaresCfg, squares_dls)
