"""Intermediate activations of any nn.Module generator, through forward hooks on named submodules."""

from __future__ import annotations

import torch
from torch import nn

from tlgan.errors import TlganError

# Modules whose output is a natural "activation" to analyse (GANSpace used the output of early blocks).
_NONLINEAR = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Mish)


class _Captured(Exception):
    """Raised from the hook to stop the forward pass once the wanted activation is in hand."""


def layer_names(module: nn.Module) -> list[str]:
    """Names of every submodule, in registration order (what ``layer`` may be)."""
    return [name for name, _ in module.named_modules() if name]


def default_layer(module: nn.Module) -> str:
    """The first nonlinearity's name: the output of the generator's first block."""
    for name, sub in module.named_modules():
        if name and isinstance(sub, _NONLINEAR):
            return name
    raise TlganError("the generator has no nonlinearity module to take activations from; pass --layer "
                     f"(one of: {', '.join(layer_names(module)[:20])})")


@torch.inference_mode()
def layer_activations(generator: nn.Module, z: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of submodule ``layer`` for latents z (N, D), flattened to (N, P) float32 on CPU.

    Runs ``generator(z)`` with a forward hook that records the first output of
    that module and stops the pass there, so later layers cost nothing.
    """
    modules = dict(generator.named_modules())
    if not layer or layer not in modules:
        names = layer_names(generator)
        raise TlganError(f"unknown layer '{layer}'; layers: {', '.join(names[:40])}{' …' if len(names) > 40 else ''}")
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor):
            raise TlganError(f"layer '{layer}' does not output a single tensor")
        seen.append(output.detach().float().reshape(output.shape[0], -1).cpu().clone())
        raise _Captured

    handle = modules[layer].register_forward_hook(hook)
    try:
        generator(z)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not seen:
        raise TlganError(f"layer '{layer}' is not used when rendering")
    return seen[0]
