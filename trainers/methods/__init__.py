"""Registry of training methods: name -> GANMethod subclass (one small file each). This dict is the
only list of method names; everything else asks it."""

from __future__ import annotations

from trainers.methods.base import GANMethod
from trainers.methods.cgan import ConditionalGAN
from trainers.methods.contrad import ContraD
from trainers.methods.damage import DamageGAN
from trainers.methods.dcgan import DCGAN
from trainers.fields import ConfigError

METHODS: dict[str, type[GANMethod]] = {
    "dcgan": DCGAN,
    "contrad": ContraD,
    "damage": DamageGAN,
    "cgan": ConditionalGAN,
}


def get_method(name: str) -> type[GANMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def baseline_method() -> str:
    """The method the report compares every other one against (the registry's ``baseline = True``)."""
    names = [name for name, cls in METHODS.items() if cls.baseline]
    if len(names) != 1:
        raise ConfigError(f"exactly one method must set baseline = True, found {names or 'none'}")
    return names[0]
