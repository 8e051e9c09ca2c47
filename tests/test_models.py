"Baselines: every model through `check_model` and a short training run; each loss term against an independent computation."
import copy, math

import pytest
import torch

from gwae.core import seed_everything
from gwae.runs import make_model
from gwae.consistency import ConsistencyRegularized
from gwae.baselines import FactorVAE, density_ratio_tc, permute_dims, tc_decomposition
from gwae.models import OptimizerConfig, build_optimizers, check_model, extra_updates, gaussian_kl, mmd, reconstruction_nll, train_step

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
    "The reference loop (`gwae.models.train_step`) on random batches, with the main learning rate set to `lr`."
    model.optimizer = model.optimizer.replace(lr=lr)
    opts = build_optimizers(model)
    g = torch.Generator().manual_seed(1)
    for t in range(steps):
        model.set_step(t)
        train_step(model, opts, x[torch.randint(len(x), (bs,), generator=g)])


BASELINES = ['ae', 'vae', 'beta_vae', 'annealed_vae', 'factor_vae', 'beta_tcvae', 'dip_vae', 'info_vae', 'wae', 'dagmm']
CASES = [(n, VEC) for n in [*BASELINES, 'cr_vae']] + [('vae', IMG), ('cr_vae', IMG), ('factor_vae', IMG)]


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


@pytest.mark.parametrize('target', ['standard', 'scalar', 'per_dim', 'per_item'])
def test_gaussian_kl_matches_torch_distributions(target):
    "The closed form against torch's, for every way of giving p (default, scalars, broadcast rows, full tensors)."
    seed_everything(0)
    mu, lv = torch.randn(2, 50, 6) * 2
    mu2, lv2 = dict(standard=(0., 0.), scalar=(0.7, -1.3), per_dim=tuple(torch.randn(2, 6)), per_item=tuple(torch.randn(2, 50, 6)))[target]
    kl = gaussian_kl(mu, lv) if target == 'standard' else gaussian_kl(mu, lv, mu2, lv2)
    std = lambda v: torch.as_tensor(v).mul(0.5).exp()
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, std(lv)), torch.distributions.Normal(torch.as_tensor(mu2), std(lv2)))
    assert kl.shape == (50, 6)
    torch.testing.assert_close(kl, ref, atol=1e-5, rtol=1e-5)


def test_bernoulli_is_stable_and_exact():
    logits, x = torch.tensor([[-80., 0., 80.]]), torch.tensor([[1., 0.5, 0.]])
    torch.testing.assert_close(reconstruction_nll(logits, x, 'bernoulli'), torch.tensor([80 + math.log(2) + 80]))
    assert reconstruction_nll(logits, x, 'gaussian').item() == pytest.approx(0.5 * (1 + 0 + 1), abs=1e-6)


def _small_dataset(n=48, d=3, seed=0):
    "Posteriors of a whole (tiny) dataset with correlated means, one code per item, and the exact MI, TC and dim-KL."
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g) @ torch.tensor([[1., .8, 0.], [0., .6, .3], [0., 0., 1.]])
    lv = torch.randn(n, d, generator=g) * 0.3 - 1
    z = mu + torch.randn(n, d, generator=g) * (0.5 * lv).exp()
    q = torch.distributions.Normal(mu[None], (0.5 * lv[None]).exp())  # q(. | x_m) for every item m
    log_q = q.log_prob(z[:, None])  # (n, n, d): log q(z_il | x_m)
    log_qz = torch.logsumexp(log_q.sum(2), 1) - math.log(n)  # q(z) = (1/N) Σ_m q(z | x_m), exactly
    log_marginals = (torch.logsumexp(log_q, 1) - math.log(n)).sum(1)  # Σ_l log q(z_l)
    log_qz_x = log_q.diagonal(dim1=0, dim2=1).sum(0)
    log_pz = torch.distributions.Normal(0., 1.).log_prob(z).sum(1)
    exact = dict(mi=(log_qz_x - log_qz).mean(), tc=(log_qz - log_marginals).mean(), dim_kl=(log_marginals - log_pz).mean())
    return z, mu, lv, exact


@pytest.mark.parametrize('estimator', ['mss', 'mws'])
def test_tc_decomposition_exact_when_the_batch_is_the_dataset(estimator):
    "With B = N every weight of both estimators is 1/N: each part equals the exact value."
    z, mu, lv, exact = _small_dataset()
    assert exact['mi'] > 0.5 and exact['tc'] > 0.05  # values far from 0, so a wrong weighting shows
    parts = tc_decomposition(z, mu, lv, dataset_size=len(z), estimator=estimator)
    for k in ('mi', 'tc', 'dim_kl'): torch.testing.assert_close(parts[k], exact[k], atol=1e-4, rtol=0)


@pytest.mark.parametrize('wrong', [2, 10])
def test_mss_depends_on_the_dataset_size(wrong):
    "A wrong N (the batch taken as a fraction of a larger dataset) moves the minibatch-stratified parts off the exact ones."
    z, mu, lv, exact = _small_dataset()
    parts = tc_decomposition(z, mu, lv, dataset_size=wrong * len(z))
    assert abs(parts['mi'] - exact['mi']) > 0.05 and abs(parts['dim_kl'] - exact['dim_kl']) > 0.05, (parts, exact)


def test_mws_is_the_official_estimator_up_to_a_constant():
    "vaetc's total_correlation (equal weights, own code included, no constants) is our MWS TC − (D−1)·log B: same gradients."
    seed_everything(0)
    B, D = 32, 4
    mu, lv, eps = torch.randn(B, D).requires_grad_(), (0.3 * torch.randn(B, D)).requires_grad_(), torch.randn(B, D)
    z = mu + eps * (0.5 * lv).exp()
    log_q = -0.5 * ((z[:, None] - mu[None]) ** 2 * torch.exp(-lv[None]) + lv[None] + math.log(2 * math.pi))
    official = (log_q.sum(2).logsumexp(1) - log_q.logsumexp(1).sum(1)).mean()
    ours = tc_decomposition(z, mu, lv, estimator='mws')['tc']
    torch.testing.assert_close(ours, official + (D - 1) * math.log(B))
    for a, b in zip(torch.autograd.grad(ours, (mu, lv), retain_graph=True), torch.autograd.grad(official, (mu, lv))):
        torch.testing.assert_close(a, b)
    mss = tc_decomposition(z, mu, lv, dataset_size=1000)['tc']
    assert not torch.allclose(torch.autograd.grad(mss, mu)[0], torch.autograd.grad(ours, mu)[0])  # a different estimator


class _CodesAsData(FactorVAE):
    "FactorVAE whose encoder is the identity with a tiny variance: the data are the codes."
    def encode(self, x): return x, torch.full_like(x, -30.)


def test_factorvae_discriminator_step_learns_the_total_correlation():
    "Trained by the model's own extra step (its loss, labels and optimizer), the discriminator finds the TC of correlated codes."
    seed_everything(0)
    model = _CodesAsData((2,), z_dim=2, nets=dict(hidden=(4,)), disc_hidden=32, disc_layers=2,
                         disc_optimizer=OptimizerConfig(lr=1e-2, betas=(0.5, 0.9)))
    opts = build_optimizers(model)
    q = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1., .9], [.9, 1.]]))  # TC = 0.83
    for _ in range(200): logs = extra_updates(model, opts, q.sample((256,)))
    assert logs['discriminator_disc_acc'] > 0.6
    with torch.no_grad():
        z = q.sample((4000,))
        assert density_ratio_tc(model.discriminator, z) > 0.3
        assert density_ratio_tc(model.discriminator, permute_dims(z)) < 0  # shuffled codes look like the product of marginals





@pytest.mark.parametrize('z_dim', [2, 64])
def test_infovae_default_is_the_official_mmd(z_dim):
    "Default InfoVAE: biased MMD with k(a, b) = exp(-mean_l (a_l - b_l)² / L) (vaetc, Zhao et al.), weight 99.9."
    seed_everything(0)
    model = make_model('info_vae', VEC, z_dim=z_dim, nets=dict(hidden=(8,)))
    z, prior = 1.5 * torch.randn(32, z_dim) + 0.3, torch.randn(32, z_dim)
    model.prior_sample = lambda n: prior[:n]
    k = lambda a, b: torch.exp(-(a[:, None] - b[None]).pow(2).mean(-1) / z_dim)
    official = k(z, z).mean() + k(prior, prior).mean() - 2 * k(z, prior).mean()
    out = model.objective(torch.tensor(0.), torch.tensor(0.), z, torch.zeros_like(z), z)
    torch.testing.assert_close(out['mmd'], official)
    torch.testing.assert_close(out['loss'], 99.9 * official)
    assert official > 1e-3
    imq = make_model('info_vae', VEC, z_dim=z_dim, nets=dict(hidden=(8,)), kernel='imq', kernel_scale=1.0, unbiased=True)
    imq.prior_sample = lambda n: prior[:n]
    torch.testing.assert_close(imq.objective(torch.tensor(0.), torch.tensor(0.), z, torch.zeros_like(z), z)['mmd'], mmd(z, prior, 'imq', 1.0))


def test_factorvae_discriminator_learns_from_the_main_steps_codes():
    "As disentanglement_lib and vaetc: the discriminator step uses the main update's own samples (pre-update, same noise)."
    seed_everything(0)
    ours = FactorVAE(VEC, z_dim=3, nets=dict(hidden=(16,)), disc_hidden=16, disc_layers=1)
    ref = copy.deepcopy(ours)
    x = vectors(32)
    opts = build_optimizers(ours)
    torch.manual_seed(1); train_step(ours, opts, x)
    # the reference: one forward pass, the VAE updated on its loss, the discriminator on the same detached codes
    ref_opts = build_optimizers(ref)
    torch.manual_seed(1)
    ref.zero_grad(); out = ref.loss(x); z = ref._main_codes.clone(); out['loss'].backward(); ref_opts['main'].step()
    ref.zero_grad(); ref.discriminator_loss(x, z)['loss'].backward(); ref_opts['discriminator'].step()
    for a, b in zip(ours.discriminator.parameters(), ref.discriminator.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    fresh = copy.deepcopy(ref)
    fresh.cfg = fresh.cfg.replace(disc_codes='fresh')
    fresh.loss(x)
    assert not torch.equal(fresh.discriminator_codes(x), fresh._main_codes)  # the option re-encodes with new noise


def _chen_log_weights(B, N, stride):
    "The importance-weight matrix of Chen et al.'s `log_importance_weight_matrix`, with the diagonal written at `stride`."
    M = B - 1
    W = torch.full((B, B), 1 / M, dtype=torch.float64)
    W.view(-1)[::stride] = 1 / N
    W.view(-1)[1::stride] = (N - M) / (N * M)
    W[M - 1, 0] = (N - M) / (N * M)
    return W


def test_mss_weights_are_the_exact_stratified_ones_not_chens_matrix():
    "Our MSS rows sum to 1 with w_ii = 1/N; Chen et al.'s code does not, and with its stride fixed differs by O(B/N)."
    from gwae.baselines import _log_importance_weights
    B, N = 16, 200
    ours = _log_importance_weights(torch.zeros(B, 2, dtype=torch.float64), N, 'mss').exp()
    torch.testing.assert_close(ours.sum(1), torch.ones(B, dtype=torch.float64))
    torch.testing.assert_close(ours.diagonal(), torch.full((B,), 1 / N, dtype=torch.float64))
    buggy, fixed = _chen_log_weights(B, N, B), _chen_log_weights(B, N, B + 1)  # stride M + 1 = B, as in their code
    assert (buggy[:, 0] == 1 / N).sum() == B - 1 and buggy.sum(1).max() > 1.05  # 1/N lands in column 0
    gap = (fixed - ours).abs().max().item()  # at the one entry (N - M)/(NM), against our (N - 1)/(NM)
    assert gap == pytest.approx((B - 2) / (N * (B - 1)))
