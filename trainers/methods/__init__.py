"""Registry of training methods: name -> GANMethod subclass (one small file each)."""

from __future__ import annotations

from trainers.config import ConfigError
from trainers.methods.base import GANMethod
from trainers.methods.cgan import ConditionalGAN
from trainers.methods.contrad import ContraD
from trainers.methods.damage import DamageGAN
from trainers.methods.dcgan import DCGAN

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
