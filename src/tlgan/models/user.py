"""People's own generators and extractors: Python entry points, TorchScript files and ONNX files.

Specs (the same three names work for ``load_generator`` and ``load_extractor``):

    entrypoint:package.module:factory     factory() or factory(device) returns the model
    entrypoint:path/to/file.py:factory    the same, from a file
    torchscript:model.pt                  torch.jit.save output
    onnx:model.onnx                       run with onnxruntime

The protocol (see docs/models.md). A generator maps latents z (N, latent_dim)
float32 ~ N(0, I) to images; it declares ``latent_dim`` and may declare
``output_range`` (default [-1, 1]) and ``output_layout`` ("NCHW" default, or
"NHWC"). An extractor maps images to features (N, F); it declares
``features`` (names, or dicts with name, kind in probability|tanh|real,
group, description) and may declare ``input_size`` (the size it wants;
tlgan resizes with anti-aliasing), ``input_range`` (default [-1, 1]) and
``input_layout``. Declarations come from attributes of the model object (for
entry points and TorchScript), from a JSON document embedded in the file
(TorchScript extra file ``tlgan.json``; ONNX metadata property ``tlgan``), or
from a sidecar ``FILE.json``. tlgan converts to its own conventions and
refuses outputs that break the declaration; ``check_model`` explains every
problem at once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tlgan.assets import file_hash
from tlgan.errors import TlganError
from tlgan.models.extractors.base import GROUPS, KINDS, Extractor, Feature, resize
from tlgan.models.generators.base import Generator

LAYOUTS = ("NCHW", "NHWC")
SIDECAR_KEY = "tlgan"


# --- declarations ----------------------------------------------------------------------------------
def _range(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TlganError(f"{what} must be two numbers [low, high], got {value!r}") from None
    if not lo < hi:
        raise TlganError(f"{what} must have low < high, got {value!r}")
    return lo, hi


def _layout(value: Any, what: str) -> str:
    if value not in LAYOUTS:
        raise TlganError(f"{what} must be NCHW or NHWC, got {value!r}")
    return value


@dataclass(frozen=True)
class GeneratorDecl:
    """What a user generator declares: latent size, output range and layout."""

    latent_dim: int
    output_range: tuple[float, float] = (-1.0, 1.0)
    output_layout: str = "NCHW"

    @classmethod
    def from_dict(cls, meta: dict[str, Any], source: str) -> "GeneratorDecl":
        dim = meta.get("latent_dim")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise TlganError(f"{source}: the generator must declare latent_dim, a positive integer (got {dim!r}); "
                             "see docs/models.md")
        return cls(int(dim), _range(meta.get("output_range", (-1, 1)), f"{source}: output_range"),
                   _layout(meta.get("output_layout", "NCHW"), f"{source}: output_layout"))


def _feature(item: Any, source: str) -> Feature:
    if isinstance(item, Feature):
        return item
    if isinstance(item, str):
        return Feature(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        kind, group = item.get("kind", "real"), item.get("group", "other")
        if kind not in KINDS:
            raise TlganError(f"{source}: feature '{item['name']}' has kind {kind!r}; use one of {', '.join(KINDS)}")
        if group not in GROUPS:
            raise TlganError(f"{source}: feature '{item['name']}' has group {group!r}; use one of {', '.join(GROUPS)}")
        return Feature(item["name"], kind, group, str(item.get("description", "")))
    raise TlganError(f"{source}: a feature must be a name or {{'name': ..., 'kind': ...}}, got {item!r}")


@dataclass(frozen=True)
class ExtractorDecl:
    """What a user extractor declares: its features, and the input size, range and layout it wants."""

    features: tuple[Feature, ...]
    input_size: tuple[int, int] | None = None
    input_range: tuple[float, float] = (-1.0, 1.0)
    input_layout: str = "NCHW"

    @classmethod
    def from_dict(cls, meta: dict[str, Any], source: str) -> "ExtractorDecl":
        raw = meta.get("features")
        if raw is None and meta.get("feature_names") is not None:
            kinds = meta.get("feature_kinds") or ["real"] * len(meta["feature_names"])
            raw = [{"name": n, "kind": k} for n, k in zip(meta["feature_names"], kinds)]
        if not raw or isinstance(raw, (str, bytes)):
            raise TlganError(f"{source}: the extractor must declare its features (a list of names or "
                             "{'name', 'kind'} dicts); see docs/models.md")
        features = tuple(_feature(item, source) for item in raw)
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise TlganError(f"{source}: feature names repeat: {sorted({n for n in names if names.count(n) > 1})}")
        size = meta.get("input_size")
        if size is not None:
            try:
                size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
            except (TypeError, ValueError):
                size = ()
            if len(size) != 2 or min(size) < 1:
                raise TlganError(f"{source}: input_size must be an integer or [height, width], got {meta['input_size']!r}")
        return cls(features, size, _range(meta.get("input_range", (-1, 1)), f"{source}: input_range"),
                   _layout(meta.get("input_layout", "NCHW"), f"{source}: input_layout"))


_DECL_KEYS = ("latent_dim", "output_range", "output_layout", "features", "feature_names", "feature_kinds",
              "input_size", "input_range", "input_layout", "name")


def _attributes(obj: Any) -> dict[str, Any]:
    """Declarations given as attributes of a model object (entry points, TorchScript modules)."""
    out = {}
    for key in _DECL_KEYS:
        try:
            value = getattr(obj, key)
        except Exception:  # noqa: BLE001 - a scripted module may raise anything for a missing attribute
            continue
        if value is not None and not callable(value) and not isinstance(value, (nn.Module, torch.Tensor)):
            out[key] = list(value) if isinstance(value, tuple) and key != "name" else value
    return out


def _sidecar(path: Path) -> dict[str, Any]:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file() and candidate != path:
            return _parse_json(candidate.read_text(errors="replace"), str(candidate))
    return {}


MAX_DECLARATION_DEPTH = 32


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (1 for a scalar), computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def _parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TlganError(f"{source}: model declaration is not valid JSON: {exc}") from None
    except RecursionError:
        raise TlganError(f"{source}: model declaration is nested too deeply") from None
    if not isinstance(data, dict):
        raise TlganError(f"{source}: model declaration must be a JSON object")
    if _depth(data) > MAX_DECLARATION_DEPTH:
        raise TlganError(f"{source}: model declaration is nested more than {MAX_DECLARATION_DEPTH} levels deep")
    return data


# --- opening models -------------------------------------------------------------------------------
@dataclass
class RawModel:
    """A user model opened but not yet checked: how to run it and what it declares."""

    run: Callable[[torch.Tensor], Any]
    meta: dict[str, Any]
    identity: str
    source: str
    module: nn.Module | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def _state_hash(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _import_factory(target: str) -> Callable[..., Any]:
    module_name, sep, func = target.rpartition(":")
    if not sep or not module_name or not func:
        raise TlganError(f"entry point must be 'package.module:factory' or 'file.py:factory', got '{target}'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise TlganError(f"entry-point file not found: {path}")
            name = f"tlgan_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except TlganError:
        raise
    except ImportError as exc:
        raise TlganError(f"cannot import '{module_name}' for entry point '{target}': {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user code may fail in any way while importing
        raise TlganError(f"importing '{module_name}' failed: {exc.__class__.__name__}: {exc}") from None
    factory = getattr(module, func, None)
    if not callable(factory):
        raise TlganError(f"'{module_name}' has no callable '{func}'")
    return factory


def open_entrypoint(target: str | None, device: torch.device) -> RawModel:
    """Call ``factory`` of ``package.module:factory`` (with the device if it takes an argument)."""
    if not target:
        raise TlganError("entrypoint needs a target: entrypoint:package.module:factory")
    factory = _import_factory(target)
    try:
        takes_arg = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes_arg = False
    try:
        obj = factory(device) if takes_arg else factory()
    except TlganError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TlganError(f"entry point '{target}' raised {exc.__class__.__name__}: {exc}") from None
    if not callable(obj):
        raise TlganError(f"entry point '{target}' returned {type(obj).__name__}, which cannot be called on a batch")
    module = obj if isinstance(obj, nn.Module) else None
    if module is not None:
        module.to(device).eval().requires_grad_(False)
    identity = getattr(obj, "identity", "") or ""
    if not identity:
        identity = f"entrypoint:{target}" + (f":{_state_hash(module)}" if module is not None else "")
    return RawModel(run=obj, meta=_attributes(obj), identity=identity, source=f"entrypoint:{target}",
                    module=module, device=device)


def open_torchscript(path: str | None, device: torch.device) -> RawModel:
    """Load a TorchScript file (runs in TorchScript's interpreter, not Python); declarations as in the module docstring."""
    if not path:
        raise TlganError("torchscript needs a file: torchscript:model.pt")
    file = Path(path).expanduser()
    if not file.is_file():
        raise TlganError(f"TorchScript file not found: {file}")
    extra = {f"{SIDECAR_KEY}.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(file), map_location=device, _extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for bad files
        raise TlganError(f"{file} is not a loadable TorchScript file: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}") from None
    module.eval()
    meta = {**_sidecar(file), **_attributes(module)}
    embedded = extra[f"{SIDECAR_KEY}.json"]
    if embedded:
        meta.update(_parse_json(embedded.decode("utf-8", errors="replace") if isinstance(embedded, bytes) else embedded,
                               f"{file} (tlgan.json)"))
    return RawModel(run=module, meta=meta, identity=f"torchscript:{file_hash(file)}", source=str(file),
                    module=module, device=device)


def open_onnx(path: str | None, device: torch.device) -> RawModel:
    """Open an ONNX file with onnxruntime (CUDA provider when the device is CUDA and it is available)."""
    if not path:
        raise TlganError("onnx needs a file: onnx:model.onnx")
    file = Path(path).expanduser()
    if not file.is_file():
        raise TlganError(f"ONNX file not found: {file}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise TlganError("ONNX models need onnxruntime: pip install onnxruntime") from None
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(file), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise TlganError(f"{file} is not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise TlganError(f"{file}: tlgan needs an ONNX model with one input, this one has {len(inputs)}")
    meta = dict(_sidecar(file))
    custom = session.get_modelmeta().custom_metadata_map
    if SIDECAR_KEY in custom:
        meta.update(_parse_json(custom[SIDECAR_KEY], f"{file} (metadata '{SIDECAR_KEY}')"))
    shape = inputs[0].shape
    if "latent_dim" not in meta and len(shape) == 2 and isinstance(shape[1], int):
        meta["latent_dim"] = shape[1]
    input_name = inputs[0].name
    np_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32

    def run(x: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {input_name: x.detach().to("cpu", torch.float32).numpy().astype(np_dtype)})[0]
        return torch.from_numpy(np.asarray(out)).to(device)

    return RawModel(run=run, meta=meta, identity=f"onnx:{file_hash(file)}", source=str(file), device=device)


OPENERS: dict[str, Callable[[str | None, torch.device], RawModel]] = {
    "entrypoint": open_entrypoint, "torchscript": open_torchscript, "onnx": open_onnx,
}


# --- output checks shared by the wrappers and check_model -------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One check's outcome: status 'ok', 'warn' or 'fail', and what it found."""

    check: str
    status: str
    message: str


def _as_tensor(out: Any) -> Any:
    if isinstance(out, np.ndarray):
        return torch.from_numpy(out)
    if isinstance(out, (tuple, list)) and len(out) == 1:
        return _as_tensor(out[0])
    return out


def check_images(out: Any, batch: int, decl: GeneratorDecl) -> list[Finding]:
    """Problems of a generator's raw output for ``batch`` latents, against its declaration."""
    out = _as_tensor(out)
    if not isinstance(out, torch.Tensor):
        return [Finding("type", "fail", f"returned {type(out).__name__}; a generator must return one tensor of images")]
    found = [Finding("type", "ok", "returns a tensor")]
    if not out.is_floating_point():
        hint = " (8-bit images? return floats and declare output_range [0, 255])" if out.dtype == torch.uint8 else ""
        found.append(Finding("dtype", "fail", f"dtype {out.dtype}; images must be float32, float16 or bfloat16{hint}"))
        return found
    if out.dtype == torch.float64:
        found.append(Finding("dtype", "fail", "dtype float64; return float32 (or float16/bfloat16)"))
    else:
        found.append(Finding("dtype", "ok", str(out.dtype)))
    channel_axis = 1 if decl.output_layout == "NCHW" else 3
    if out.ndim != 4 or out.shape[0] != batch or out.shape[channel_axis] != 3:
        want = "(N, 3, H, W)" if decl.output_layout == "NCHW" else "(N, H, W, 3)"
        hint = ""
        if out.ndim == 4 and out.shape[0] == batch:
            other = 3 if channel_axis == 1 else 1
            if out.shape[other] == 3:
                hint = f"; it looks like {'NHWC' if other == 3 else 'NCHW'}: declare output_layout accordingly"
        found.append(Finding("shape", "fail", f"shape {tuple(out.shape)} for {batch} latents; expected {want} with N = {batch}{hint}"))
        return found
    found.append(Finding("shape", "ok", f"{tuple(out.shape)} ({decl.output_layout})"))
    return found + _check_values(out.float(), decl.output_range, "images")


def _check_values(out: torch.Tensor, value_range: tuple[float, float], what: str) -> list[Finding]:
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        return [Finding("finite", "fail", f"{bad} of {out.numel()} values are NaN or infinite")]
    found = [Finding("finite", "ok", "no NaN or infinite values")]
    lo, hi = value_range
    span = hi - lo
    vmin, vmax = float(out.min()), float(out.max())
    if vmin < lo - 0.01 * span or vmax > hi + 0.01 * span:
        found.append(Finding("range", "fail", f"{what} span [{vmin:.4g}, {vmax:.4g}], outside the declared range "
                                              f"[{lo:g}, {hi:g}]; declare the range the model really outputs"))
    elif vmax - vmin < 0.25 * span:
        found.append(Finding("range", "warn", f"{what} span only [{vmin:.4g}, {vmax:.4g}] of the declared [{lo:g}, {hi:g}]; "
                                              "is the declared range right?"))
    else:
        found.append(Finding("range", "ok", f"[{vmin:.4g}, {vmax:.4g}] within [{lo:g}, {hi:g}]"))
    return found


def check_features(out: Any, batch: int, decl: ExtractorDecl) -> list[Finding]:
    """Problems of an extractor's raw output for ``batch`` images, against its declared features."""
    out = _as_tensor(out)
    if not isinstance(out, torch.Tensor):
        return [Finding("type", "fail", f"returned {type(out).__name__}; an extractor must return one tensor (N, F)")]
    found = [Finding("type", "ok", "returns a tensor")]
    if not out.is_floating_point() or out.dtype == torch.float64:
        found.append(Finding("dtype", "fail", f"dtype {out.dtype}; features must be float32 (or float16/bfloat16)"))
        if not out.is_floating_point():
            return found
    else:
        found.append(Finding("dtype", "ok", str(out.dtype)))
    count = len(decl.features)
    if out.ndim != 2 or out.shape != (batch, count):
        hint = f"; it returns {out.shape[1]} values per image but declares {count} features" \
            if out.ndim == 2 and out.shape[0] == batch else ""
        found.append(Finding("shape", "fail", f"shape {tuple(out.shape)} for {batch} images; expected ({batch}, {count}){hint}"))
        return found
    found.append(Finding("shape", "ok", f"({batch}, {count})"))
    out = out.float()
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        found.append(Finding("finite", "fail", f"{bad} of {out.numel()} values are NaN or infinite"))
        return found
    found.append(Finding("finite", "ok", "no NaN or infinite values"))
    limits = {"probability": (0.0, 1.0), "tanh": (-1.0, 1.0)}
    wrong = []
    for j, feature in enumerate(decl.features):
        if feature.kind in limits:
            lo, hi = limits[feature.kind]
            col = out[:, j]
            if float(col.min()) < lo - 1e-4 or float(col.max()) > hi + 1e-4:
                wrong.append(f"'{feature.name}' ({feature.kind}) spans [{float(col.min()):.4g}, {float(col.max()):.4g}]")
    if wrong:
        found.append(Finding("range", "fail", "; ".join(wrong) + "; probabilities must lie in [0, 1], tanh scores in "
                                                               "[-1, 1] (declare kind 'real' for unbounded values)"))
    else:
        found.append(Finding("range", "ok", "every feature within its kind's range"))
    return found


def _first_failure(findings: list[Finding], source: str) -> None:
    for finding in findings:
        if finding.status == "fail":
            raise TlganError(f"{source}: {finding.check}: {finding.message} (run `tlgan check-model` for a full report)")


# --- wrappers -------------------------------------------------------------------------------------------
class UserGenerator(Generator):
    """A user's generator behind tlgan's Generator protocol (range and layout converted, output checked)."""

    def __init__(self, raw: RawModel) -> None:
        super().__init__()
        self.decl = GeneratorDecl.from_dict(raw.meta, raw.source)
        self._raw = raw
        self.model = raw.module  # registered so that .to() and .eval() reach it
        self.latent_dim = self.decl.latent_dim
        self.name = str(raw.meta.get("name") or raw.source.split(":")[0])
        self.identity = raw.identity

    def raw(self, z: torch.Tensor) -> Any:
        """The model's own output for z, unconverted and unchecked."""
        return _as_tensor(self._raw.run(z))

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        out = self.raw(z)
        _first_failure(check_images(out, z.shape[0], self.decl), self._raw.source)
        if self.decl.output_layout == "NHWC":
            out = out.permute(0, 3, 1, 2)
        lo, hi = self.decl.output_range
        return ((out.float() - lo) * (2.0 / (hi - lo)) - 1.0).clamp(-1, 1).contiguous()


class UserExtractor(Extractor):
    """A user's extractor behind tlgan's Extractor protocol (input resized and converted, output checked)."""

    def __init__(self, raw: RawModel) -> None:
        super().__init__()
        self.decl = ExtractorDecl.from_dict(raw.meta, raw.source)
        self._raw = raw
        self.model = raw.module
        self.features = self.decl.features
        self.name = str(raw.meta.get("name") or raw.source.split(":")[0])
        self.identity = raw.identity

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """tlgan images (N, 3, H, W) in [-1, 1] -> the input the model declared (size, range, layout)."""
        if self.decl.input_size is not None:
            images = resize(images, self.decl.input_size)
        lo, hi = self.decl.input_range
        x = (images.float() + 1.0) * ((hi - lo) / 2.0) + lo
        return x.permute(0, 2, 3, 1).contiguous() if self.decl.input_layout == "NHWC" else x

    def raw(self, x: torch.Tensor) -> Any:
        return _as_tensor(self._raw.run(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise TlganError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        out = self.raw(self.prepare(images))
        _first_failure(check_features(out, images.shape[0], self.decl), self._raw.source)
        return out.float()


def _probe_generator(generator: UserGenerator) -> UserGenerator:
    """Render one latent so that problems surface at load time, and learn the resolution."""
    z = torch.randn(1, generator.latent_dim, generator=torch.Generator().manual_seed(0)).to(generator._raw.device)
    with torch.no_grad():
        try:
            images = generator.synthesize(z)
        except TlganError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise TlganError(f"{generator._raw.source}: rendering one latent failed: {exc.__class__.__name__}: {exc}") from None
    generator.resolution = int(images.shape[-1])
    return generator


def _generator_loader(spec_name: str) -> Callable[[str | None, torch.device], Generator]:
    def load(arg: str | None, device: torch.device) -> Generator:
        raw = OPENERS[spec_name](arg, device)
        if isinstance(raw.run, Generator):  # an entry point may return a tlgan Generator: use it as is
            return raw.run
        return _probe_generator(UserGenerator(raw))

    return load


def _extractor_loader(spec_name: str) -> Callable[[str | None, torch.device], Extractor]:
    def load(arg: str | None, device: torch.device) -> Extractor:
        raw = OPENERS[spec_name](arg, device)
        if isinstance(raw.run, Extractor):
            return raw.run
        extractor = UserExtractor(raw)
        extractor.differentiable = spec_name != "onnx"  # onnxruntime gives no gradients
        return extractor

    return load


load_entrypoint_generator = _generator_loader("entrypoint")
load_torchscript_generator = _generator_loader("torchscript")
load_onnx_generator = _generator_loader("onnx")
load_entrypoint_extractor = _extractor_loader("entrypoint")
load_torchscript_extractor = _extractor_loader("torchscript")
load_onnx_extractor = _extractor_loader("onnx")
