"Shapes, ranges, spectral norm and gradient flow of `gwae.nets` across sizes and channel counts."
import pytest
import torch
from torch import nn

from gwae.nets import ConvEncoder, ConvDecoder, Critic, conv_critic_x_net, make_critic, make_decoder, make_encoder

SHAPES = [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64), (7,)]


@pytest.mark.parametrize('x_shape', SHAPES)
@pytest.mark.parametrize('gaussian', [True, False])
def test_shapes_and_ranges(x_shape, gaussian):
    torch.manual_seed(0)
    enc, dec, critic = make_encoder(x_shape, 5, gaussian=gaussian), make_decoder(x_shape, 5), make_critic(x_shape, 5)
    x = torch.rand(3, *x_shape)
    mu, logvar = enc(x)
    assert mu.shape == (3, 5)
    assert (logvar.shape == (3, 5)) if gaussian else (logvar is None)
    xr = dec(5 * torch.randn(3, 5))
    assert xr.shape == x.shape
    if len(x_shape) == 3: assert bool(((xr > 0) & (xr < 1)).all())
    assert critic(x, mu).shape == (3,)


def test_padding_mode_is_used():
    for mode in ('zeros', 'replicate'):
        enc = ConvEncoder(1, 32, 4, padding_mode=mode)
        assert all(m.padding_mode == mode for m in enc.modules() if isinstance(m, nn.Conv2d))


def test_28px_border_replication_matches_32px_net():
    "A 28 px encoder is the 32 px encoder applied to the replicate-padded image."
    torch.manual_seed(0)
    e28, e32 = ConvEncoder(1, 28, 4), ConvEncoder(1, 32, 4)
    convs28 = [m for m in e28.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    convs32 = [m for m in e32.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for a, b in zip(convs28, convs32): b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 28, 28)
    x32 = nn.functional.pad(x, (2, 2, 2, 2), mode='replicate')
    torch.testing.assert_close(e28(x)[0], e32(x32)[0])


def test_critic_spectral_norm_converges():
    torch.manual_seed(0)
    critic = Critic(conv_critic_x_net(1, 28), z_dim=4)
    with torch.no_grad():
        for _ in range(100): critic(torch.rand(2, 1, 28, 28), torch.randn(2, 4))
    for m in critic.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            s = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
            assert abs(s.item() - 1) < 0.02


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match='not supported'): ConvEncoder(3, 48, 4)
    with pytest.raises(ValueError, match='expects a batch'): ConvEncoder(3, 32, 4)(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match='data shape must be'): make_decoder((3, 32), 4)
