"Interface, BatchNorm behaviour and mixture-weight gradients of `gwae.priors`."
import pytest
import torch

from gwae.priors import PRIORS, GaussianMixturePrior, PriorConfig


@pytest.mark.parametrize('kind', list(PRIORS))
def test_interface(kind):
    torch.manual_seed(0)
    prior = PriorConfig(kind=kind, n_components=3).build(5)
    z = prior.sample(32)
    assert z.shape == (32, 5) and prior.z_dim == 5 and z.device == prior.device
    if kind != 'factorized_normal':  # training mode: standardised per batch
        torch.testing.assert_close(z.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
        assert prior.eval().sample(1).shape == (1, 5)
    assert prior.double().sample(3).dtype == torch.float64


@pytest.mark.parametrize('mode', ['none', 'straight_through'])
def test_gmp_logit_gradient(mode):
    torch.manual_seed(0)
    gmp = GaussianMixturePrior(3, n_components=4, component_grad=mode)
    gmp.sample(64).pow(3).sum().backward()
    assert (gmp.logits.grad is None) == (mode == 'none')
    assert gmp.component_mean.grad.abs().sum() > 0 and gmp.component_matrix.grad.abs().sum() > 0


def test_gmp_log_prob_normalised():
    "The eval-mode density integrates to 1 (Monte Carlo with a wide uniform proposal in 2-d)."
    torch.manual_seed(0)
    gmp = GaussianMixturePrior(2, n_components=3)
    with torch.no_grad():
        for _ in range(3): gmp.sample(128)
        gmp.eval()
        lo, hi = -8.0, 8.0
        u = lo + (hi - lo) * torch.rand(400_000, 2)
        mass = gmp.log_prob(u).exp().mean().item() * (hi - lo) ** 2
    assert abs(mass - 1) < 0.03


def test_bad_arguments():
    with pytest.raises(ValueError, match='n_components'): GaussianMixturePrior(2, n_components=0)
    with pytest.raises(ValueError, match='temperature'): GaussianMixturePrior(2, temperature=0)
    with pytest.raises(ValueError, match='needs n >= 2'): PriorConfig(kind='neural').build(2).sample(1)


def test_official_names_and_alias():
    "`PRIORS` uses the official sampler_type names; 'normal' is accepted and stored as 'factorized_normal'."
    assert set(PRIORS) == {'factorized_normal', 'neural', 'factorized_neural', 'gm'}
    assert PriorConfig(kind='normal').kind == 'factorized_normal'
    assert PriorConfig.from_dict({'kind': 'normal'}) == PriorConfig(kind='factorized_normal')
