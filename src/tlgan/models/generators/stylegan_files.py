"""StyleGAN weight files -> tlgan generators: ``stylegan:FILE`` and ``tlgan convert stylegan``.

Formats (the loader tells them apart by suffix and content):
- ``.pkl``: NVlabs' PyTorch release pickles (stylegan2-ada-pytorch, stylegan3), read through
  ``formats.nvlabs_pickle`` (the embedded module source is never run). The architecture is read
  from the pickled modules' attributes (what the forward pass actually used), the tensors by name.
  NVlabs' TensorFlow StyleGAN2 / StyleGAN2-ADA pickles ((G, D, Gs) of ``dnnlib.tflib`` Networks) are
  read like the PG-GAN ones (``formats.tf1_network``'s holders; ``build_module_src`` never runs),
  and their variables mapped to the PyTorch names and layouts.
- ``.pt`` / ``.pth``: rosinality's stylegan2-pytorch checkpoints (``g_ema`` state dict, and
  ``latent_avg`` when converted), read with ``torch.load(weights_only=True)``; names are mapped
  to NVlabs' and the equalised-lr scale of the modulated convolutions is folded into the weights
  (exact, since demodulation divides it out again).
- ``.safetensors``: written by ``convert``: NVlabs-named float32 tensors plus a JSON header with
  the family and config. Loading it gives the same identity and the same images as the source.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlgan.atomic import atomic_path
from tlgan.errors import TlganError
from tlgan.safefile import read_tlgan_file

from .base import Generator
from .stylegan2 import StyleGAN2Config
from .stylegan2 import build as build_stylegan2

FORMAT = "tlgan.stylegan"
VERSION = 1
FAMILIES = ("stylegan2", "stylegan3")


@dataclass
class StyleGANWeights:
    """NVlabs-named tensors plus the config to build them into, and where they came from."""

    family: str
    config: Any
    tensors: dict[str, torch.Tensor] = field(repr=False)
    source: str
    origin: str
    info: dict[str, Any] = field(default_factory=dict)


# --- NVlabs pickles ----------------------------------------------------------------------------------
def _stylegan2_config(G: Any, source: str) -> StyleGAN2Config:
    """StyleGAN2Config from a pickled NVlabs Generator module (networks.py / networks_stylegan2.py)."""
    mapping, synthesis = G.child("mapping"), G.child("synthesis")
    resolution = int(G.attr("img_resolution"))
    fc0 = mapping.child("fc0")
    num_layers = int(mapping.attr("num_layers"))
    blocks = [synthesis.child(f"b{2 ** i}") for i in range(2, int(math.log2(resolution)) + 1)]
    channels = tuple(int(b.child("conv1").state["_parameters"]["weight"].shape[0]) for b in blocks)
    layer = blocks[0].child("conv1")
    kernel = tuple(layer.state["_parameters"]["weight"].shape[2:])
    if kernel != (3, 3):
        raise TlganError(f"{source}: StyleGAN2 with {kernel} convolution kernels is not supported (3x3 only)")
    flt = blocks[0].state["_buffers"]["resample_filter"]
    taps = flt.sum(dim=0) if flt.ndim == 2 else flt
    clamp = layer.attr("conv_clamp")
    last_fc = mapping.child(f"fc{num_layers - 1}")
    config = StyleGAN2Config(
        z_dim=int(G.attr("z_dim")), w_dim=int(G.attr("w_dim")), img_resolution=resolution,
        img_channels=int(G.attr("img_channels")), channels=channels, mapping_layers=num_layers,
        mapping_features=int(fc0.state["_parameters"]["weight"].shape[0]) if num_layers > 1 else int(G.attr("w_dim")),
        mapping_lr_multiplier=float(fc0.attr("bias_gain", 1.0)), mapping_activation=str(fc0.attr("activation", "lrelu")),
        num_fp16_res=sum(bool(b.attr("use_fp16", False)) for b in blocks),
        conv_clamp=None if clamp is None else float(clamp), architecture=str(blocks[-1].attr("architecture", "skip")),
        activation=str(layer.attr("activation", "lrelu")), use_noise=bool(layer.attr("use_noise", True)),
        resample_filter=tuple(float(t) for t in (taps / taps.sum()).tolist()),
    )
    for block in blocks:
        if bool(block.attr("use_fp16", False)) != config.use_fp16(int(block.attr("resolution"))):
            raise TlganError(f"{source}: the fp16 layout of the pickled blocks does not follow NVlabs' num_fp16_res rule")
    if last_fc.state["_parameters"]["weight"].shape[0] != config.w_dim:
        raise TlganError(f"{source}: the mapping network's last layer does not output w_dim={config.w_dim}")
    return config


def read_nvlabs(path: str | Path) -> StyleGANWeights:
    """Read ``G_ema`` of an NVlabs PyTorch pickle (StyleGAN2 or StyleGAN3) without running its code."""
    from tlgan.models.formats.nvlabs_pickle import pick_generator, read_nvlabs_pickle

    path = Path(path)
    G = pick_generator(read_nvlabs_pickle(path), path)
    if G.class_name != "Generator":
        raise TlganError(f"{path}: the generator is a pickled {G.class_name}, not an NVlabs Generator")
    c_dim = int(G.attr("c_dim", 0) or 0)
    if c_dim:
        raise TlganError(f"{path}: conditional StyleGAN (c_dim={c_dim}) is not supported; tlgan renders G(z, None)")
    tensors = {name: value.detach().to(torch.float32).contiguous() for name, value in G.tensors()}
    synthesis = G.child("synthesis")
    info = {"init_kwargs": _plain(G.init_kwargs)}
    try:
        if "input" in synthesis.children:
            from .stylegan3 import config_from_pickle

            return StyleGANWeights("stylegan3", config_from_pickle(G, str(path)), tensors, str(path), "nvlabs-pickle", info)
        if "b4" in synthesis.children:
            return StyleGANWeights("stylegan2", _stylegan2_config(G, str(path)), tensors, str(path), "nvlabs-pickle", info)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise TlganError(f"{path}: the pickled generator's modules lack what StyleGAN needs "
                         f"({exc.__class__.__name__}: {str(exc)[:120]})") from None
    raise TlganError(f"{path}: the pickled generator is neither StyleGAN2 (synthesis.b4) nor StyleGAN3 (synthesis.input)")


def _plain(value: Any) -> Any:
    """JSON-safe copy of pickled constructor kwargs (anything else becomes its repr)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)[:200]


# --- NVlabs TensorFlow StyleGAN2 pickles ------------------------------------------------------------
def _tf_params(net: Any, path: Path, prefix: str = "") -> dict[str, Any]:
    """Variables of a pickled dnnlib.tflib Network and its components, named 'component/.../variable'."""
    from tlgan.models.formats.unpickle import PlainHolder

    state = net.state if isinstance(net, PlainHolder) else None
    if not isinstance(state, dict):
        raise TlganError(f"{path}: a pickled TensorFlow Network has no state")
    out: dict[str, Any] = {}
    for entry in state.get("variables") or []:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise TlganError(f"{path}: a TensorFlow Network holds a variable entry that is not (name, array)")
        out[prefix + entry[0]] = np.asarray(entry[1])
    for name, comp in (state.get("components") or {}).items():
        out.update(_tf_params(comp, path, f"{prefix}{name}/"))
    return out


def read_tf_stylegan2(path: str | Path) -> StyleGANWeights:
    """Gs of an NVlabs TensorFlow StyleGAN2 / StyleGAN2-ADA pickle ((G, D, Gs) of dnnlib.tflib Networks), without
    TensorFlow and without running its build_module_src; names and layouts mapped to NVlabs' PyTorch ones."""
    from tlgan.models.formats.tf1_network import TF1_ALLOWED
    from tlgan.models.formats.unpickle import PlainHolder, load_pickle

    path = Path(path)
    data = load_pickle(path, TF1_ALLOWED, "TensorFlow StyleGAN pickle")
    nets = list(data) if isinstance(data, (tuple, list)) else [data]
    if not nets or not all(isinstance(n, PlainHolder) and isinstance(n.state, dict) for n in nets):
        raise TlganError(f"{path} does not hold pickled dnnlib.tflib Networks")
    G = nets[2] if len(nets) == 3 else next((n for n in nets if n.state.get("name") == "Gs"), nets[-1])
    state = G.state
    if int(state.get("version") or 0) < 4:
        raise TlganError(f"{path}: TensorFlow network pickle version {state.get('version')} is too old (StyleGAN1?)")
    kw = dict(state.get("static_kwargs") or {})

    def kwarg(name: str, default: Any) -> Any:
        value = kw.get(name, default)
        value = value.item() if isinstance(value, np.generic) else value
        return default if value is None else value

    if int(kwarg("label_size", 0)):
        raise TlganError(f"{path}: conditional StyleGAN (label_size={kw['label_size']}) is not supported")
    tf = _tf_params(G, path)
    resolution = int(kwarg("resolution", 1024))
    architecture = str(kwarg("architecture", "skip"))
    for name in list(tf):
        m = re.fullmatch(r"synthesis/ToRGB_lod(\d+)/(.*)", name)
        if m:
            r = resolution // 2 ** int(m.group(1))
            tf[f"synthesis/{r}x{r}/ToRGB/{m.group(2)}"] = tf[name]
            architecture = "orig"
    w_dim = int(kwarg("dlatent_size", 512))
    mapping_layers = int(kwarg("mapping_layers", 8))
    mapping_fmaps = kwarg("mapping_fmaps", None)
    clamp = kwarg("conv_clamp", None)
    filt = [float(t) for t in kwarg("resample_kernel", [1, 3, 3, 1])]
    config = StyleGAN2Config(
        z_dim=int(kwarg("latent_size", 512)), w_dim=w_dim, img_resolution=resolution,
        img_channels=int(kwarg("num_channels", 3)),
        channels=StyleGAN2Config.channels_for(resolution, int(kwarg("fmap_base", 16384)) * 2, int(kwarg("fmap_max", 512))),
        mapping_layers=mapping_layers, mapping_features=int(mapping_fmaps) if mapping_fmaps else w_dim,
        mapping_lr_multiplier=float(kwarg("mapping_lrmul", 0.01)),
        mapping_activation=str(kwarg("mapping_nonlinearity", "lrelu")), num_fp16_res=int(kwarg("num_fp16_res", 0)),
        conv_clamp=None if clamp is None else float(clamp), architecture=architecture,
        activation=str(kwarg("nonlinearity", "lrelu")), use_noise=bool(kwarg("use_noise", True)),
        resample_filter=tuple(filt))

    def take(name: str) -> np.ndarray:
        if name not in tf:
            raise TlganError(f"{path}: TensorFlow variable '{name}' is missing; not a StyleGAN2 config E/F generator")
        return tf[name]

    def t(value: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(value, dtype=np.float32))  # a copy; keeps 0-d arrays 0-d

    out: dict[str, torch.Tensor] = {"mapping.w_avg": t(take("dlatent_avg"))}
    for i in range(mapping_layers):
        out[f"mapping.fc{i}.weight"] = t(take(f"mapping/Dense{i}/weight").T)
        out[f"mapping.fc{i}.bias"] = t(take(f"mapping/Dense{i}/bias"))
    out["synthesis.b4.const"] = t(take("synthesis/4x4/Const/const")[0])

    def layer(dst: str, src: str, noise: int | None, flip: bool = False) -> None:
        weight = take(f"{src}/weight")
        weight = weight[::-1, ::-1] if flip else weight  # TF's up-conv kernel is stored flipped
        out[f"{dst}.weight"] = t(weight.transpose(3, 2, 0, 1))
        out[f"{dst}.bias"] = t(take(f"{src}/bias"))
        out[f"{dst}.affine.weight"] = t(take(f"{src}/mod_weight").T)
        out[f"{dst}.affine.bias"] = t(take(f"{src}/mod_bias") + 1)  # TF adds the 1 at run time
        if noise is not None and config.use_noise:
            out[f"{dst}.noise_const"] = t(take(f"synthesis/noise{noise}")[0, 0])
            out[f"{dst}.noise_strength"] = t(np.asarray(take(f"{src}/noise_strength")).reshape(()))

    layer("synthesis.b4.conv1", "synthesis/4x4/Conv", 0)
    for res in config.block_resolutions:
        log2 = int(math.log2(res))
        if res > 4:
            layer(f"synthesis.b{res}.conv0", f"synthesis/{res}x{res}/Conv0_up", 2 * log2 - 5, flip=True)
            layer(f"synthesis.b{res}.conv1", f"synthesis/{res}x{res}/Conv1", 2 * log2 - 4)
            if architecture == "resnet":
                out[f"synthesis.b{res}.skip.weight"] = t(take(f"synthesis/{res}x{res}/Skip/weight")[::-1, ::-1].transpose(3, 2, 0, 1))
        if architecture == "skip" or res == resolution:
            layer(f"synthesis.b{res}.torgb", f"synthesis/{res}x{res}/ToRGB", None)
    from .stylegan2 import StyleGAN2

    for name, value in StyleGAN2(config).state_dict().items():
        if name.endswith("resample_filter"):
            out[name] = value  # derived from resample_kernel, not stored by TF
    info = {"static_kwargs": _plain(kw), "build_func_name": str(state.get("build_func_name", ""))}
    return StyleGANWeights("stylegan2", config, out, str(path), "nvlabs-tf-pickle", info)


# --- rosinality -----------------------------------------------------------------------------------
def _load_torch(path: Path) -> Any:
    import argparse

    try:
        # Training checkpoints hold the run's argparse.Namespace; it is plain data, allowed explicitly.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise TlganError(f"cannot read {path} as a weights-only torch file: {str(exc).splitlines()[0][:300]}") from None


def read_rosinality(path: str | Path) -> StyleGANWeights:
    """A rosinality stylegan2-pytorch checkpoint (``g_ema`` [+ ``latent_avg``]) as NVlabs-named tensors."""
    path = Path(path)
    ckpt = _load_torch(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise TlganError(f"{path} is not a rosinality stylegan2-pytorch checkpoint (no 'g_ema' state dict)")
    sd: dict[str, torch.Tensor] = {k: v.to(torch.float32) for k, v in ckpt["g_ema"].items() if isinstance(v, torch.Tensor)}
    src = str(path)

    def take(name: str) -> torch.Tensor:
        if name not in sd:
            raise TlganError(f"{src}: rosinality checkpoint lacks '{name}'")
        return sd[name]

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0:
        raise TlganError(f"{src}: no mapping layers ('style.1.weight') in g_ema")
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in sd:
        n_rgbs += 1
    resolution = 2 ** (n_rgbs + 2)
    w_dim = int(take("style.1.weight").shape[0])
    channels = (int(take("input.input").shape[1]),) + tuple(int(take(f"to_rgbs.{k}.conv.weight").shape[2]) for k in range(n_rgbs))
    args = ckpt.get("args")
    lr_mlp = float(getattr(args, "lr_mlp", 0.01) or 0.01)
    config = StyleGAN2Config(z_dim=w_dim, w_dim=w_dim, img_resolution=resolution, img_channels=3, channels=channels,
                             mapping_layers=n_mlp, mapping_features=w_dim, mapping_lr_multiplier=lr_mlp,
                             num_fp16_res=0, conv_clamp=None)
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]

    def styled(src_name: str, dst: str, noise: str) -> None:
        weight = take(f"{src_name}.conv.weight")[0]
        out[f"{dst}.weight"] = weight / math.sqrt(weight[0].numel())  # fold rosinality's run-time scale
        out[f"{dst}.affine.weight"] = take(f"{src_name}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src_name}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src_name}.noise.weight").reshape(())
        out[f"{dst}.bias"] = take(f"{src_name}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.{noise}")[0, 0]

    def to_rgb(src_name: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src_name}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src_name}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src_name}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src_name}.bias").reshape(-1)

    styled("conv1", "synthesis.b4.conv1", "noise_0")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for k in range(n_rgbs):
        block = f"synthesis.b{2 ** (k + 3)}"
        styled(f"convs.{2 * k}", f"{block}.conv0", f"noise_{2 * k + 1}")
        styled(f"convs.{2 * k + 1}", f"{block}.conv1", f"noise_{2 * k + 2}")
        to_rgb(f"to_rgbs.{k}", f"{block}.torgb")
    info: dict[str, Any] = {}
    if isinstance(ckpt.get("latent_avg"), torch.Tensor):
        out["mapping.w_avg"] = ckpt["latent_avg"].to(torch.float32).reshape(-1)
    else:
        info["w_avg"] = "estimated from 10,000 mapped z (seed 0): the checkpoint has no latent_avg"
    # Buffers rosinality keeps elsewhere (FIR filters) or not at all: the standard values.
    from .stylegan2 import StyleGAN2

    fresh = StyleGAN2(config).state_dict()
    for name, value in fresh.items():
        if name.endswith("resample_filter"):
            out[name] = value
    if "mapping.w_avg" not in out:
        out["mapping.w_avg"] = _estimate_w_avg(config, out)
    return StyleGANWeights("stylegan2", config, out, src, "rosinality", info)


def _estimate_w_avg(config: StyleGAN2Config, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    from .stylegan2 import MappingNetwork

    mapping = MappingNetwork(config)
    mapping.load_state_dict({k[len("mapping."):]: v for k, v in tensors.items() if k.startswith("mapping.") and k != "mapping.w_avg"},
                            strict=False)
    z = torch.randn(10_000, config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return mapping(z).mean(dim=0)


# --- tlgan's conversion ----------------------------------------------------------------------------
def _config_from_json(family: str, data: dict[str, Any]) -> Any:
    if family == "stylegan2":
        return StyleGAN2Config.from_json(data)
    from .stylegan3 import StyleGAN3Config

    return StyleGAN3Config.from_json(data)


def read_converted(path: str | Path) -> StyleGANWeights:
    tensors, header = read_tlgan_file(path, FORMAT, VERSION, "converted StyleGAN", framework="pt",
                                      no_header_hint="; convert with: tlgan convert stylegan IN.pkl OUT.safetensors")
    family = header.get("family")
    if family not in FAMILIES or not isinstance(header.get("config"), dict):
        raise TlganError(f"{path}: header names no known StyleGAN family/config (family {family!r})")
    return StyleGANWeights(family, _config_from_json(family, header["config"]), tensors, str(path), "tlgan",
                           dict(header.get("info") or {}))


def read_weights(path: str | Path) -> StyleGANWeights:
    """Read any supported StyleGAN file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"StyleGAN weights not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        try:
            return read_nvlabs(path)
        except TlganError as exc:
            if "TensorFlow StyleGAN pickle" not in str(exc):
                raise
        return read_tf_stylegan2(path)
    if suffix in (".pt", ".pth", ".ckpt"):
        return read_rosinality(path)
    if suffix == ".safetensors":
        return read_converted(path)
    raise TlganError(f"StyleGAN weights must be .pkl (NVlabs), .pt/.pth (rosinality) or .safetensors (converted), got {path.name}")


def build(weights: StyleGANWeights) -> Generator:
    """The tlgan generator for ``weights`` (eval mode, no grads); identity = family + weights hash."""
    if weights.family == "stylegan2":
        return build_stylegan2(weights.config, weights.tensors, weights.source)
    from .stylegan3 import build as build_stylegan3

    return build_stylegan3(weights.config, weights.tensors, weights.source)


def convert_to_safetensors(src: str | Path, dst: str | Path) -> StyleGANWeights:
    """Write a StyleGAN file as tlgan .safetensors (config header + NVlabs-named float32 tensors), atomically."""
    from safetensors.torch import save_file

    weights = read_weights(src)
    build(weights)  # validate before anything is written
    header = {"format": FORMAT, "version": VERSION, "family": weights.family, "source": Path(src).name,
              "origin": weights.origin, "config": weights.config.to_json(), "info": weights.info}
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in weights.tensors.items()}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata={"tlgan": json.dumps(header, sort_keys=True)})
    return weights


def load_stylegan(path: str | None, device: torch.device | str = "cpu") -> Generator:
    """Registry loader for ``stylegan:FILE``."""
    if not path:
        raise TlganError("stylegan needs a weights file: stylegan:stylegan2-ffhq-1024x1024.pkl "
                         "(NVlabs .pkl, rosinality .pt, or a converted .safetensors)")
    return build(read_weights(path)).to(device)
