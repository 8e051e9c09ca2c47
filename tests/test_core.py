"Dense checks of `gwae.core` configs and the `gwae` console entry point (the notebook shows the common cases)."
import dataclasses, subprocess
from typing import Literal, Optional

import pytest
from hypothesis import given, settings, strategies as st

import gwae
from gwae.core import Config, param, parse_overrides, seed_everything


@dataclasses.dataclass
class Inner(Config):
    lr: float = param(1e-4, gt=0)
    sizes: tuple[int, ...] = param((32, 64))


@dataclasses.dataclass
class Outer(Config):
    z_dim: int = param(8, ge=1, le=4096)
    name: str = param('run')
    prior: Literal['normal', 'neural'] = param('normal')
    epochs: Optional[int] = param(None, ge=1)
    tags: list[str] = param([])
    inner: Inner = param(Inner())


names = st.text(st.characters(codec='utf-8', exclude_categories=('Cs', 'Cc')), max_size=20)
configs = st.builds(
    Outer,
    z_dim=st.integers(1, 4096),
    name=names,
    prior=st.sampled_from(['normal', 'neural']),
    epochs=st.none() | st.integers(1, 10**6),
    tags=st.lists(names, max_size=3),
    inner=st.builds(Inner, lr=st.floats(1e-12, 1e3, allow_nan=False), sizes=st.lists(st.integers(1, 512), max_size=4).map(tuple)),
)


@settings(max_examples=60, deadline=None)
@given(configs)
def test_yaml_round_trip(cfg):
    assert Outer.from_yaml(cfg.to_yaml()) == cfg


@pytest.mark.parametrize('text', ['0E0', '1e3', '-2E+3', '.5', '1_0.5', '.inf', '3e-4'])
def test_float_like_strings_survive_the_round_trip(text):
    "Strings the loader would read as floats are written quoted (hypothesis once found '0E0')."
    cfg = Outer(name='x', tags=[text])
    assert Outer.from_yaml(cfg.to_yaml()).tags == [text]


@settings(max_examples=60, deadline=None)
@given(configs, st.integers(1, 4096), st.floats(1e-9, 1.0, allow_nan=False))
def test_overrides_change_only_what_they_name(cfg, z, lr):
    new = cfg.override([f'z_dim={z}', f'inner.lr={lr!r}'])
    assert (new.z_dim, new.inner.lr) == (z, lr)
    assert dataclasses.replace(new, z_dim=cfg.z_dim, inner=cfg.inner) == cfg


def test_defaults_are_not_shared_between_instances():
    a, b = Outer(), Outer()
    a.tags.append('x')
    assert b.tags == [] and a.inner is not b.inner


@pytest.mark.parametrize('bad, message', [
    (dict(z_dim=0), 'Outer.z_dim must be >= 1'),
    (dict(z_dim=5000), 'Outer.z_dim must be <= 4096'),
    (dict(epochs=0), 'Outer.epochs must be >= 1'),
    (dict(prior='gm'), "expected one of 'normal', 'neural'"),
    (dict(tags='abc'), 'Outer.tags: expected list'),
    (dict(tags=[1]), r'Outer.tags\[0\]: expected str'),
    (dict(inner=dict(lr=-1.0)), 'Inner.lr must be > 0'),
    (dict(inner=dict(sizes=[1, 'a'])), r'sizes\[1\]: expected int'),
    (dict(inner=3), 'expected Inner'),
])
def test_bad_values_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        Outer.from_dict(bad)


def test_unknown_nested_key_suggests_the_right_one():
    with pytest.raises(ValueError, match=r"Outer.inner: unknown key 'lrr'; did you mean 'lr'\?"):
        Outer.from_dict({'inner': {'lrr': 1.0}})
    with pytest.raises(ValueError, match=r"unknown key 'zzz'; known keys: lr, sizes"):
        Outer.from_dict({'inner': {'zzz': 1.0}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='config file not found'):
        Outer.from_yaml(tmp_path / 'nope.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('z_dim: [1, 2\n')
    with pytest.raises(ValueError, match='not valid YAML'):
        Outer.from_yaml(bad)
    top = tmp_path / 'list.yaml'
    top.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='expected a mapping'):
        Outer.from_yaml(top)


def test_overrides_that_conflict_are_refused():
    with pytest.raises(ValueError, match='conflicts with an earlier override'):
        parse_overrides(['a=1', 'a.b=2'])


def test_seed_rejects_bool():
    with pytest.raises(ValueError):
        seed_everything(True)


def test_console_script_reports_version():
    out = subprocess.run(['gwae', '--version'], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f'gwae {gwae.__version__}'
    out = subprocess.run(['gwae', '--help'], capture_output=True, text=True, check=True)
    assert 'usage: gwae' in out.stdout
