"""Test helpers: StyleGAN weight files in the real formats, with random weights at small resolution.

- ``write_nvlabs_pickle``: a pickle laid out like NVlabs' release files (a dict with G, D, G_ema,
  augment_pipe, training_set_kwargs). Each network module is a stand-in object whose
  ``__reduce__`` returns ``torch_utils.persistence._reconstruct_persistent_obj`` (a function in a
  fake module registered only while pickling) with ``meta = {type, version, module_src,
  class_name, state}``; ``state`` is the module ``__dict__`` NVlabs' classes pickle
  (``_parameters``, ``_buffers``, ``_modules``, ``_init_args``, ``_init_kwargs``, attributes such as
  NumPy-float ``weight_gain``). Parameters are real ``torch.nn.Parameter`` objects, so torch's own
  reduce writes ``_rebuild_parameter`` / ``_rebuild_tensor_v2`` / ``storage._load_from_bytes``.
  ``module_src`` is a payload that creates a marker file if anything ever executes it.
- ``write_rosinality``: a rosinality stylegan2-pytorch checkpoint (``g_ema`` state dict with
  rosinality's names and ``latent_avg``; optionally a training checkpoint with ``args``).

Weights come from tlgan's own StyleGAN2 built with a seed (FFHQ-like flags: 8-layer mapping,
fp16 layers, conv_clamp 256), so a test can compare the loaded generator with the one written.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlgan.models.generators.stylegan2 import StyleGAN2, StyleGAN2Config, weights_hash

FFHQ_LIKE = dict(z_dim=32, w_dim=32, img_resolution=32, img_channels=3, channels=(32, 32, 16, 8),
                 mapping_layers=8, mapping_features=32, num_fp16_res=4, conv_clamp=256.0)


def payload_src(marker: Path) -> str:
    """Module source that would create ``marker`` if executed (NVlabs' loader executes module_src)."""
    return (f"open({str(marker)!r}, 'w').write('module_src ran')\n"
            "import torch\nclass Generator(torch.nn.Module):\n    pass\n")


def random_stylegan2(seed: int = 0, **overrides: Any) -> StyleGAN2:
    """tlgan's StyleGAN2 with random weights like a trained net: nonzero noise strengths and biases, a w_avg."""
    config = StyleGAN2Config(**{**FFHQ_LIKE, **overrides})
    torch.manual_seed(seed)
    model = StyleGAN2(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(torch.randn([]) * 0.3)
            elif name.endswith(".bias") and "affine" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
        z = torch.randn(256, config.z_dim)
        model.mapping.w_avg.copy_(model.mapping(z).mean(0))
    model.identity = f"stylegan2:{weights_hash(model.state_dict())}"
    return model.eval().requires_grad_(False)


# --- NVlabs persistence pickles ----------------------------------------------------------------------
class _Persistent:
    """Stands for one NVlabs persistent module instance; pickles exactly as persistence.__reduce__ does."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str, reconstruct: Any) -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
        self.reconstruct = reconstruct

    def __reduce__(self) -> tuple:
        return (self.reconstruct, (self.meta,))


class _Writer:
    def __init__(self, module_src: str, reconstruct: Any) -> None:
        self.src, self.reconstruct = module_src, reconstruct

    def module(self, class_name: str, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
               modules: dict[str, _Persistent], init_args: tuple, init_kwargs: dict, **attrs: Any) -> _Persistent:
        state = {
            "training": False,
            "_parameters": OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()),
            "_buffers": OrderedDict((k, v.clone()) for k, v in buffers.items()),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(), "_forward_pre_hooks": OrderedDict(),
            "_state_dict_hooks": OrderedDict(), "_load_state_dict_pre_hooks": OrderedDict(),
            "_modules": OrderedDict(modules),
            "_init_args": init_args, "_init_kwargs": init_kwargs,
            **attrs,
        }
        return _Persistent(class_name, state, self.src, self.reconstruct)


def _sub(sd: dict[str, torch.Tensor], prefix: str, names: list[str]) -> dict[str, torch.Tensor]:
    return {n: sd[f"{prefix}.{n}"] for n in names if f"{prefix}.{n}" in sd}


def _fc(w: _Writer, sd: dict, prefix: str, activation: str, lr: float, bias_init: float) -> _Persistent:
    out_f, in_f = sd[f"{prefix}.weight"].shape
    return w.module("FullyConnectedLayer", _sub(sd, prefix, ["weight", "bias"]), {}, {}, (in_f, out_f),
                    {"activation": activation, "lr_multiplier": lr, "bias_init": bias_init} if activation != "linear"
                    else {"bias_init": bias_init},
                    in_features=in_f, out_features=out_f, activation=activation,
                    weight_gain=np.float64(lr / np.sqrt(in_f)), bias_gain=lr)


def nvlabs_generator(model: StyleGAN2, w: _Writer, channel_base: int, channel_max: int) -> _Persistent:
    """The persistent-module tree of NVlabs' networks_stylegan2.Generator for ``model``'s weights."""
    c = model.config
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fcs = OrderedDict((f"fc{i}", _fc(w, sd, f"mapping.fc{i}", c.mapping_activation, c.mapping_lr_multiplier, 0))
                      for i in range(c.mapping_layers))
    mapping = w.module("MappingNetwork", {}, {"w_avg": sd["mapping.w_avg"]}, fcs, (),
                       dict(z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, num_ws=model.num_ws, num_layers=c.mapping_layers),
                       z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, num_ws=model.num_ws, num_layers=c.mapping_layers,
                       w_avg_beta=0.998)
    blocks = OrderedDict()
    for block in model.synthesis.blocks():
        res, p = block.resolution, f"synthesis.b{block.resolution}"
        subs = OrderedDict()
        for name in (["conv0"] if block.in_channels else []) + ["conv1"]:
            lp = f"{p}.{name}"
            layer = getattr(block, name)
            out_ch, in_ch = sd[f"{lp}.weight"].shape[:2]
            affine = _fc(w, sd, f"{lp}.affine", "linear", 1, 1)
            subs[name] = w.module(
                "SynthesisLayer", _sub(sd, lp, ["weight", "noise_strength", "bias"]),
                _sub(sd, lp, ["resample_filter", "noise_const"]), {"affine": affine}, (in_ch, out_ch),
                dict(w_dim=c.w_dim, resolution=res, up=layer.up, resample_filter=[1, 3, 3, 1], conv_clamp=c.conv_clamp,
                     channels_last=False),
                in_channels=in_ch, out_channels=out_ch, w_dim=c.w_dim, resolution=res, up=layer.up, use_noise=True,
                activation="lrelu", conv_clamp=c.conv_clamp, padding=1, act_gain=np.float64(np.sqrt(2)))
        if block.num_torgb:
            out_ch, in_ch = sd[f"{p}.torgb.weight"].shape[:2]
            subs["torgb"] = w.module(
                "ToRGBLayer", _sub(sd, f"{p}.torgb", ["weight", "bias"]), {},
                {"affine": _fc(w, sd, f"{p}.torgb.affine", "linear", 1, 1)}, (in_ch, out_ch),
                dict(w_dim=c.w_dim, conv_clamp=c.conv_clamp, channels_last=False),
                in_channels=in_ch, out_channels=out_ch, w_dim=c.w_dim, conv_clamp=c.conv_clamp,
                weight_gain=np.float64(1 / np.sqrt(in_ch)))
        params = {"const": sd[f"{p}.const"]} if f"{p}.const" in sd else {}
        blocks[f"b{res}"] = w.module(
            "SynthesisBlock", params, {"resample_filter": sd[f"{p}.resample_filter"]}, subs,
            (block.in_channels, c.channels[c.block_resolutions.index(res)]),
            dict(w_dim=c.w_dim, resolution=res, img_channels=c.img_channels, is_last=block.is_last,
                 use_fp16=block.use_fp16, architecture=c.architecture, conv_clamp=c.conv_clamp),
            in_channels=block.in_channels, w_dim=c.w_dim, resolution=res, img_channels=c.img_channels,
            is_last=block.is_last, architecture=c.architecture, use_fp16=block.use_fp16, channels_last=False,
            fused_modconv_default=True, num_conv=block.num_conv, num_torgb=block.num_torgb)
    synthesis_kwargs = dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=c.num_fp16_res,
                            conv_clamp=c.conv_clamp, architecture=c.architecture)
    synthesis = w.module(
        "SynthesisNetwork", {}, {}, blocks, (),
        dict(w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=c.img_channels, **synthesis_kwargs),
        w_dim=c.w_dim, img_resolution=c.img_resolution, img_resolution_log2=int(math.log2(c.img_resolution)),
        img_channels=c.img_channels, num_fp16_res=c.num_fp16_res, block_resolutions=c.block_resolutions,
        num_ws=model.num_ws)
    init_kwargs = dict(z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.img_resolution,
                       img_channels=c.img_channels, mapping_kwargs={"num_layers": c.mapping_layers}, **synthesis_kwargs)
    return w.module("Generator", {}, {}, OrderedDict(synthesis=synthesis, mapping=mapping), (), init_kwargs,
                    z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.img_resolution,
                    img_channels=c.img_channels, num_ws=model.num_ws)


def _fake_persistence() -> types.ModuleType:
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> None:  # never called: the reader must not call it
        raise RuntimeError("the real _reconstruct_persistent_obj must never be called by tlgan")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    return module


def write_nvlabs_pickle(path: Path, model: StyleGAN2 | None = None, marker: Path | None = None, protocol: int = 3,
                        g_other: StyleGAN2 | None = None, top: str = "dict") -> Path:
    """Write a stylegan2-ada-pytorch / stylegan3 style release pickle of ``model`` (as G_ema).

    G is written with other weights (``g_other``, default: another seed), so loading the wrong
    network would show. ``top='module'`` pickles the bare G_ema module instead of the dict.
    """
    model = model or random_stylegan2()
    g_other = g_other or random_stylegan2(seed=99, **{k: getattr(model.config, k) for k in ("z_dim", "w_dim", "img_resolution", "channels")})
    marker = marker or path.with_suffix(".module_src_ran")
    saved = {name: sys.modules.get(name) for name in ("torch_utils", "torch_utils.persistence")}
    persistence = _fake_persistence()
    package = types.ModuleType("torch_utils")
    package.persistence = persistence
    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = package, persistence
    try:
        w = _Writer(payload_src(marker), persistence._reconstruct_persistent_obj)
        g_ema = nvlabs_generator(model, w, channel_base=512, channel_max=32)
        if top == "module":
            data: Any = g_ema
        else:
            d = w.module("Discriminator", {"b4.weight": torch.randn(4, 4)}, {}, {}, (), {"c_dim": 0}, c_dim=0)
            data = {"G": nvlabs_generator(g_other, w, 512, 32), "D": d, "G_ema": g_ema, "augment_pipe": None,
                    "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "resolution": model.resolution}}
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=protocol)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path


# --- rosinality ----------------------------------------------------------------------------------------
def rosinality_state(model: StyleGAN2) -> dict[str, torch.Tensor]:
    """``model``'s weights under rosinality's names and parametrisation (conv weights (1, O, I, k, k), unscaled)."""
    sd = model.state_dict()
    c = model.config
    out: dict[str, torch.Tensor] = {}
    for i in range(c.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"].clone()
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"].clone()
    out["input.input"] = sd["synthesis.b4.const"][None].clone()

    def styled(dst: str, src: str, noise: str) -> None:
        weight = sd[f"{src}.weight"]
        out[f"{dst}.conv.weight"] = (weight * math.sqrt(weight[0].numel()))[None].clone()
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1).clone()
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"].clone()
        out[f"noises.{noise}"] = sd[f"{src}.noise_const"][None, None].clone()

    def rgb(dst: str, src: str, upsample: bool) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None].clone()
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1).clone()
        if upsample:
            out[f"{dst}.upsample.kernel"] = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 16 * 4

    styled("conv1", "synthesis.b4.conv1", "noise_0")
    rgb("to_rgb1", "synthesis.b4.torgb", False)
    for k, res in enumerate(c.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noise_{2 * k + 1}")
        out[f"convs.{2 * k}.conv.blur.kernel"] = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 16 * 4
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noise_{2 * k + 2}")
        rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", True)
    return out


def write_rosinality(path: Path, model: StyleGAN2, training_checkpoint: bool = False) -> Path:
    """A rosinality checkpoint: convert_weight.py's {'g_ema', 'latent_avg'}, or a training one with 'args' (no latent_avg)."""
    if training_checkpoint:
        args = argparse.Namespace(size=model.resolution, latent=model.w_dim, n_mlp=model.config.mapping_layers,
                                  lr_mlp=model.config.mapping_lr_multiplier, channel_multiplier=2)
        data = {"g": rosinality_state(model), "g_ema": rosinality_state(model), "args": args, "ada_aug_p": 0.0}
    else:
        data = {"g_ema": rosinality_state(model), "latent_avg": model.mapping.w_avg.clone()}
    torch.save(data, path)
    return path


def rosinality_config(model: StyleGAN2) -> StyleGAN2Config:
    """The config rosinality's code implies for ``model``'s weights: no fp16, no clamp."""
    from dataclasses import replace

    return replace(model.config, num_fp16_res=0, conv_clamp=None)


# --- StyleGAN3 -------------------------------------------------------------------------------------------
def random_stylegan3(seed: int = 0, radial: bool = False) -> Any:
    """A tiny StyleGAN3 (T, or R with radial filters and 1x1 convs) with NVlabs' filter design and random weights."""
    from tlgan.models.generators.stylegan3 import (
        StyleGAN3,
        StyleGAN3Config,
        design_filters,
    )

    kwargs = dict(conv_kernel=1, use_radial_filters=True) if radial else {}
    config = StyleGAN3Config.design(z_dim=16, w_dim=16, img_resolution=16, num_layers=4, channel_base=512,
                                    channel_max=16, **kwargs)
    torch.manual_seed(seed)
    model = StyleGAN3(config)
    with torch.no_grad():
        for name, value in design_filters(config).items():
            model.get_buffer(name).copy_(value)
        for name, p in model.named_parameters():
            if name.endswith(".bias") and "affine" not in name:
                p.copy_(torch.randn_like(p) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("magnitude_ema"):
                b.fill_(float(torch.rand([]) + 0.5))
        model.mapping.w_avg.copy_(model.mapping(torch.randn(256, 16)).mean(0))
    model.identity = f"stylegan3:{weights_hash(model.state_dict())}"
    return model.eval().requires_grad_(False)


def nvlabs_generator3(model: Any, w: _Writer) -> _Persistent:
    """The persistent-module tree of NVlabs' networks_stylegan3.Generator for ``model``'s weights."""
    c = model.config
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    fcs = OrderedDict((f"fc{i}", _fc(w, sd, f"mapping.fc{i}", "lrelu", c.mapping_lr_multiplier, 0))
                      for i in range(c.mapping_layers))
    mapping = w.module("MappingNetwork", {}, {"w_avg": sd["mapping.w_avg"]}, fcs, (),
                       dict(z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, num_ws=c.num_ws, num_layers=c.mapping_layers),
                       z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, num_ws=c.num_ws, num_layers=c.mapping_layers,
                       w_avg_beta=0.998)
    p = "synthesis.input"
    inp = w.module("SynthesisInput", _sub(sd, p, ["weight"]), _sub(sd, p, ["transform", "freqs", "phases"]),
                   {"affine": _fc(w, sd, f"{p}.affine", "linear", 1, 0)}, (),
                   dict(w_dim=c.w_dim, channels=c.input_channels, size=c.input_size[0],
                        sampling_rate=c.input_sampling_rate, bandwidth=c.input_bandwidth),
                   w_dim=c.w_dim, channels=c.input_channels, size=np.broadcast_to(np.asarray(c.input_size[0]), [2]),
                   sampling_rate=np.float64(c.input_sampling_rate), bandwidth=np.float64(c.input_bandwidth))
    layers = OrderedDict(input=inp)
    for spec in c.layers:
        lp = f"synthesis.{spec.name}"
        buffers = OrderedDict(magnitude_ema=sd[f"{lp}.magnitude_ema"],
                              up_filter=sd.get(f"{lp}.up_filter"), down_filter=sd.get(f"{lp}.down_filter"))
        layers[spec.name] = w.module(
            "SynthesisLayer", _sub(sd, lp, ["weight", "bias"]), {}, {"affine": _fc(w, sd, f"{lp}.affine", "linear", 1, 1)},
            (), dict(w_dim=c.w_dim, is_torgb=spec.is_torgb, use_fp16=spec.use_fp16, in_channels=spec.in_channels,
                     out_channels=spec.out_channels, conv_clamp=spec.conv_clamp),
            w_dim=c.w_dim, is_torgb=spec.is_torgb, is_critically_sampled=False, use_fp16=spec.use_fp16,
            in_channels=spec.in_channels, out_channels=spec.out_channels,
            in_size=np.broadcast_to(np.asarray(spec.in_size[0]), [2]), out_size=np.broadcast_to(np.asarray(spec.out_size[0]), [2]),
            conv_kernel=spec.conv_kernel, conv_clamp=spec.conv_clamp, magnitude_ema_beta=0.999,
            up_factor=spec.up_factor, up_taps=spec.up_taps, down_factor=spec.down_factor, down_taps=spec.down_taps,
            down_radial=spec.down_radial, padding=list(spec.padding))
        layers[spec.name].meta["state"]["_buffers"] = buffers  # None filters stay as NVlabs stores them
    synthesis = w.module("SynthesisNetwork", {}, {}, layers, (),
                         dict(w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=c.img_channels),
                         w_dim=c.w_dim, num_ws=c.num_ws, img_resolution=c.img_resolution, img_channels=c.img_channels,
                         num_layers=len(c.layers) - 1, num_critical=2, margin_size=10, output_scale=c.output_scale,
                         num_fp16_res=4, layer_names=[s.name for s in c.layers])
    return w.module("Generator", {}, {}, OrderedDict(synthesis=synthesis, mapping=mapping), (),
                    dict(z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.img_resolution,
                         img_channels=c.img_channels, mapping_kwargs={"num_layers": c.mapping_layers}),
                    z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.img_resolution,
                    img_channels=c.img_channels, num_ws=c.num_ws)


def write_nvlabs_pickle3(path: Path, model: Any, marker: Path, protocol: int = 4) -> Path:
    """A stylegan3 release-style pickle of ``model`` (as G_ema; G the same weights halved)."""
    saved = {name: sys.modules.get(name) for name in ("torch_utils", "torch_utils.persistence")}
    persistence = _fake_persistence()
    package = types.ModuleType("torch_utils")
    package.persistence = persistence
    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = package, persistence
    try:
        w = _Writer(payload_src(marker), persistence._reconstruct_persistent_obj)
        data = {"G_ema": nvlabs_generator3(model, w), "augment_pipe": None,
                "training_set_kwargs": {"resolution": model.resolution}}
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=protocol)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path


# --- NVlabs TensorFlow StyleGAN2 pickles --------------------------------------------------------------
def tf_variables(model: StyleGAN2) -> tuple[list, list, list]:
    """(Gs own variables, mapping variables, synthesis variables) in TF's names and layouts for ``model``."""
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    c = model.config
    mapping = []
    for i in range(c.mapping_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T.copy()), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    synthesis = [("4x4/Const/const", sd["synthesis.b4.const"][None])]

    def layer(src: str, dst: str, noise: int | None, flip: bool = False) -> None:
        weight = sd[f"{src}.weight"].transpose(2, 3, 1, 0)  # (out, in, k, k) -> (k, k, in, out)
        synthesis.extend([
            (f"{dst}/weight", (weight[::-1, ::-1] if flip else weight).copy()), (f"{dst}/bias", sd[f"{src}.bias"]),
            (f"{dst}/mod_weight", sd[f"{src}.affine.weight"].T.copy()), (f"{dst}/mod_bias", sd[f"{src}.affine.bias"] - 1)])
        if noise is not None:
            synthesis.append((f"{dst}/noise_strength", sd[f"{src}.noise_strength"]))
            synthesis.append((f"noise{noise}", sd[f"{src}.noise_const"][None, None]))

    layer("synthesis.b4.conv1", "4x4/Conv", 0)
    layer("synthesis.b4.torgb", "4x4/ToRGB", None)
    for res in c.block_resolutions[1:]:
        log2 = int(math.log2(res))
        layer(f"synthesis.b{res}.conv0", f"{res}x{res}/Conv0_up", 2 * log2 - 5, flip=True)
        layer(f"synthesis.b{res}.conv1", f"{res}x{res}/Conv1", 2 * log2 - 4)
        layer(f"synthesis.b{res}.torgb", f"{res}x{res}/ToRGB", None)
    return [("dlatent_avg", sd["mapping.w_avg"])], mapping, synthesis


def write_tf_stylegan2(path: Path, model: StyleGAN2, marker: Path, drop: str | None = None) -> Path:
    """(G, D, Gs) of fake ``dnnlib.tflib.network.Network`` objects whose state is what TF StyleGAN2 pickled:
    version, name, static_kwargs, components (EasyDict of mapping/synthesis Networks), build_module_src
    (a payload here), build_func_name, variables. ``drop`` removes one synthesis variable."""
    names = ("dnnlib", "dnnlib.util", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {name: sys.modules.get(name) for name in names}
    mods = {name: types.ModuleType(name) for name in names}

    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    class EasyDict(dict):
        pass

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    mods["dnnlib.tflib.network"].Network = Network
    mods["dnnlib.util"].EasyDict = EasyDict
    sys.modules.update(mods)
    try:
        c = model.config
        own, mapping, synthesis = tf_variables(model)
        synthesis = [(n, v) for n, v in synthesis if n != drop]
        src = payload_src(marker)
        kwargs = EasyDict(latent_size=c.z_dim, dlatent_size=c.w_dim, resolution=c.img_resolution, num_channels=3,
                          fmap_base=128, fmap_max=32, mapping_layers=c.mapping_layers, label_size=0,
                          num_fp16_res=c.num_fp16_res, conv_clamp=c.conv_clamp, truncation_psi=0.5)

        def net(name: str, variables: list, components: dict | None = None, func: str = "G_main") -> Network:
            return Network({"version": 4, "name": name, "static_kwargs": kwargs, "components": EasyDict(components or {}),
                            "build_module_src": src, "build_func_name": func, "variables": variables})

        gs = net("Gs", own, {"mapping": net("G_mapping", mapping, func="G_mapping"),
                             "synthesis": net("G_synthesis", synthesis, func="G_synthesis")})
        half = lambda vs: [(n, v * 0.5) for n, v in vs]
        g = net("G", half(own), {"mapping": net("G_mapping", half(mapping), func="G_mapping"),
                                 "synthesis": net("G_synthesis", half(synthesis), func="G_synthesis")})
        d = net("D", [("Output/weight", np.ones((4, 1), np.float32))], func="D_stylegan2")
        with open(path, "wb") as handle:
            pickle.dump((g, d, gs), handle, protocol=4)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path
