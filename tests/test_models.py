"Models: every model through `check_model` and a short training run; each loss term against an independent computation."
import copy, math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gwae.core import seed_everything
from gwae.models import (MODELS, ConsistencyRegularized, check_model, density_ratio_tc, dip_covariance, dip_penalty,
                         gaussian_kl, gaussian_log_density, kernel_matrix, make_model, mmd, permute_dims, prior_nll,
                         random_affine, reconstruction_nll, reparameterize, tc_decomposition)

torch.set_num_threads(1)
VEC, IMG = (16,), (1, 28, 28)
SMALL = dict(beta_tcvae=dict(dataset_size=256), factor_vae=dict(disc_hidden=32, disc_layers=2), dagmm=dict(est_hidden=16))


def vectors(n=256, seed=0):
    "Three noisy clusters in [0, 1]^16."
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, VEC[0], generator=g) * 2
    return torch.sigmoid(centres[torch.randint(3, (n,), generator=g)] + 0.3 * torch.randn(n, VEC[0], generator=g))


def blob_images(n=64, seed=0):
    "Gaussian blobs at random positions on a 28 px gray canvas."
    g = torch.Generator().manual_seed(seed)
    c = 6 + 16 * torch.rand(n, 2, generator=g)
    r = torch.arange(28.)
    d2 = (r[None, :, None] - c[:, 0, None, None]) ** 2 + (r[None, None, :] - c[:, 1, None, None]) ** 2
    return torch.exp(-d2 / 18)[:, None]


def build(name, x_shape):
    nets = dict(hidden=(64,)) if len(x_shape) == 1 else dict(width=16, hidden=64)
    if name == 'cr_vae':
        tf = None if len(x_shape) == 3 else (lambda x: (x + 0.02 * torch.randn_like(x)).clamp(0, 1))
        return ConsistencyRegularized(make_model('vae', x_shape, z_dim=4, nets=nets), transform=tf, max_rotation=10.)
    return make_model(name, x_shape, z_dim=4, nets=nets, **SMALL.get(name, {}))


def eval_loss(model, x):
    model.set_step(0)
    torch.manual_seed(123)
    with torch.no_grad(): return model.loss(x)['loss'].item()


def train(model, x, steps, lr=2e-3, bs=64):
    "A tiny loop: main step, then every declared extra step, all gradients zeroed first."
    opt = model.optimizer.replace(lr=lr).build(model.main_parameters())
    extras = [(s, s.optimizer.build(s.params)) for s in model.extra_steps()]
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        xb = x[torch.randint(len(x), (bs,), generator=g)]
        model.set_step(t)
        model.zero_grad()
        model.loss(xb)['loss'].backward()
        opt.step()
        for s, o in extras:
            for _ in range(s.n_steps):
                model.zero_grad()
                s.loss(xb)['loss'].backward()
                o.step()


CASES = [(n, VEC) for n in [*MODELS, 'cr_vae']] + [('vae', IMG), ('cr_vae', IMG), ('factor_vae', IMG)]


@pytest.mark.parametrize('name,x_shape', CASES, ids=[f"{n}-{'img' if len(s) == 3 else 'vec'}" for n, s in CASES])
def test_model_contract_and_training(name, x_shape):
    seed_everything(0)
    x = vectors() if len(x_shape) == 1 else blob_images()
    model = build(name, x_shape)
    out = check_model(model, x[:16])
    assert 'rec' in out
    start = copy.deepcopy(model)
    train(model, x, steps=60 if len(x_shape) == 1 else 25)
    # the same objective at the start and end points: adversaries (discriminators) as trained, in both
    for s0, s in zip(start.extra_steps(), model.extra_steps()):
        for p0, p in zip(s0.params, s.params): p0.data.copy_(p.data)
    before, after = eval_loss(start, x), eval_loss(model, x)
    assert after < before, (before, after)
    assert all(torch.isfinite(v) for v in model.loss(x[:16]).values())
    try: score = model.anomaly_score(x[:8])
    except NotImplementedError: return
    assert score.shape == (8,) and torch.isfinite(score).all()


def test_gaussian_kl_matches_monte_carlo():
    seed_everything(0)
    mu, lv, mu2, lv2 = torch.randn(4, 2, 3)
    z = mu + torch.randn(200_000, 2, 3) * (0.5 * lv).exp()
    mc = (gaussian_log_density(z, mu, lv) - gaussian_log_density(z, mu2, lv2)).mean(0)
    torch.testing.assert_close(mc / gaussian_kl(mu, lv, mu2, lv2), torch.ones(2, 3), atol=0.02, rtol=0)
    torch.testing.assert_close(gaussian_kl(mu, lv).sum(1), gaussian_kl(mu, lv, torch.zeros(2, 3), torch.zeros(2, 3)).sum(1))


def test_bernoulli_is_stable_and_exact():
    logits, x = torch.tensor([[-80., 0., 80.]]), torch.tensor([[1., 0.5, 0.]])
    torch.testing.assert_close(reconstruction_nll(logits, x, 'bernoulli'), torch.tensor([80 + math.log(2) + 80]))
    assert reconstruction_nll(logits, x, 'gaussian').item() == pytest.approx(0.5 * (1 + 0 + 1), abs=1e-6)


def _posteriors(n, rho, sigma=0.5):
    cov = torch.tensor([[1., rho], [rho, 1.]])
    mu = torch.distributions.MultivariateNormal(torch.zeros(2), cov).sample((n,))
    lv = torch.full_like(mu, 2 * math.log(sigma))
    return reparameterize(mu, lv), mu, lv


@pytest.mark.parametrize('dataset_size', [512, 60_000])
def test_tc_near_zero_for_independent_and_positive_for_correlated(dataset_size):
    seed_everything(0)
    tc = lambda rho: torch.stack([tc_decomposition(*_posteriors(512, rho), dataset_size)['tc'] for _ in range(4)]).mean().item()
    r = 0.9 / 1.25
    assert abs(tc(0.)) < 0.06
    assert tc(0.9) == pytest.approx(-0.5 * math.log(1 - r**2), abs=0.1)


def test_tc_decomposition_sums_to_kl():
    seed_everything(0)
    z, mu, lv = _posteriors(128, 0.5)
    parts = tc_decomposition(z, mu, lv, 5000)
    mc = (gaussian_log_density(z, mu, lv) - gaussian_log_density(z)).sum(1).mean()
    torch.testing.assert_close(sum(parts.values()), mc, atol=1e-4, rtol=0)
    sums, kls = [], []
    for _ in range(60):
        z, mu, lv = _posteriors(128, 0.5)
        sums.append(sum(tc_decomposition(z, mu, lv, 5000).values()))
        kls.append(gaussian_kl(mu, lv).sum(1).mean())
    assert torch.stack(sums).mean().item() == pytest.approx(torch.stack(kls).mean().item(), abs=0.04)


def test_factorvae_density_ratio_sign():
    "A discriminator that outputs the exact log q(z)/∏q(z_l) gives TC > 0 on correlated codes."
    seed_everything(0)
    cov = torch.tensor([[1., .8], [.8, 1.]])
    q = torch.distributions.MultivariateNormal(torch.zeros(2), cov)
    oracle = lambda z: (q.log_prob(z) - gaussian_log_density(z).sum(1))[:, None]
    z = q.sample((20_000,))
    assert density_ratio_tc(oracle, z).item() == pytest.approx(-0.5 * math.log(1 - .64), abs=0.03)
    assert density_ratio_tc(oracle, permute_dims(z)).item() < 0  # shuffled codes look like the product of marginals


def test_factorvae_discriminator_learns_correlation():
    "The trained discriminator's TC estimate is larger on correlated than on independent codes."
    seed_everything(0)
    model = make_model('factor_vae', VEC, z_dim=2, nets=dict(hidden=(8,)), disc_hidden=32, disc_layers=2)
    opt = torch.optim.Adam(model.discriminator.parameters(), 1e-2)
    q = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1., .9], [.9, 1.]]))
    for _ in range(200):
        z = q.sample((256,))
        real, perm = model.discriminator(z), model.discriminator(permute_dims(z))
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(perm, torch.zeros_like(perm))
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad(): assert density_ratio_tc(model.discriminator, q.sample((2000,))) > 0.3


@pytest.mark.parametrize('kernel', ['rbf', 'imq'])
def test_mmd_zero_for_identical_and_kernel_psd(kernel):
    seed_everything(0)
    a = torch.randn(150, 5)
    assert abs(mmd(a, a, kernel, unbiased=False).item()) < 1e-6
    assert torch.linalg.eigvalsh(kernel_matrix(a, a, kernel).double()).min() > -1e-6
    assert mmd(a, torch.randn(150, 5) + 1, kernel) > 10 * abs(mmd(a, torch.randn(150, 5), kernel))


def test_dip_penalty_zero_at_identity():
    assert dip_penalty(torch.eye(4), 3., 7.).item() == 0
    seed_everything(0)
    w = torch.randn(100_000, 3)
    assert dip_penalty(dip_covariance(w * math.sqrt(.5), torch.full_like(w, math.log(.5)), 'ii'), 1., 1.) < 1e-3
    assert dip_penalty(dip_covariance(w, torch.zeros_like(w), 'ii'), 1., 1.) > 2.9  # diag 2 -> 3·(2-1)²


def test_consistency_zero_for_identity_transform():
    seed_everything(0)
    x = blob_images(8)
    torch.testing.assert_close(random_affine(x, 0., 0., (1., 1.)), x, atol=1e-5, rtol=0)
    vae = make_model('vae', IMG, z_dim=3, nets=dict(width=8, hidden=16))
    with torch.no_grad():
        assert ConsistencyRegularized(vae, transform=lambda t: t).consistency(x, x).item() == 0
        assert ConsistencyRegularized(vae).consistency(x, random_affine(x)).item() > 0


def test_prior_nll_and_anomaly_score_modes():
    seed_everything(0)
    vae = make_model('vae', VEC, z_dim=3, nets=dict(hidden=(8,)))
    x = vectors(8)
    with torch.no_grad():
        torch.testing.assert_close(vae.anomaly_score(x, sample=False), prior_nll(vae.encode(x)[0]))
        assert not torch.equal(vae.anomaly_score(x), vae.anomaly_score(x))  # sampled z by default
    torch.testing.assert_close(prior_nll(torch.zeros(2, 3)), torch.full((2,), 1.5 * math.log(2 * math.pi)))
