"""``tlgan check-model``: run a model on a tiny batch and explain everything that is wrong with it.

Works on any generator or extractor spec. For users' models (entrypoint:,
torchscript:, onnx:) the model's raw output is checked against its
declaration (see tlgan.usermodels): load and declaration, output type, dtype,
shape, NaN/inf, range, determinism (same input twice), batch independence
(one sample alone gives what it gave inside the batch) and sensitivity (different
inputs give different outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from tlgan.devices import resolve_device
from tlgan.errors import TlganError

from .extractors import Extractor, load_extractor
from .generators import Generator, load_generator
from .user import (
    OPENERS,
    ExtractorDecl,
    Finding,
    GeneratorDecl,
    UserExtractor,
    _as_tensor,
    check_features,
    check_images,
)

Kind = Literal["generator", "extractor"]
STATUS_LABEL = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


@dataclass
class ModelReport:
    """Findings of check_model, in the order the checks ran."""

    spec: str
    kind: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.status == "fail" for f in self.findings)

    def failed(self) -> list[str]:
        return [f.check for f in self.findings if f.status == "fail"]

    def format(self) -> str:
        lines = [f"{self.kind} {self.spec}"]
        lines += [f"  {STATUS_LABEL[f.status]:<5} {f.check:<12} {f.message}" for f in self.findings]
        lines.append("  result: " + ("OK" if self.ok else f"{len(self.failed())} problem(s): {', '.join(self.failed())}"))
        return "\n".join(lines)


def _run(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> tuple[Any, str | None]:
    try:
        with torch.no_grad():
            return _as_tensor(fn(x)), None
    except Exception as exc:  # noqa: BLE001 - the point is to report whatever the user's model does
        return None, f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().nan_to_num() - b.float().nan_to_num()).abs().max())


def probe_images(count: int, size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Varied test images (count, 3, H, W) in [-1, 1]: smooth random colour fields plus fine noise."""
    h, w = (size, size) if isinstance(size, int) else size
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=gen) * 2 - 1
    images = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    images = images + 0.1 * torch.randn(count, 3, h, w, generator=gen)
    return images.clamp(-1, 1)


def _common_checks(report: ModelReport, run: Callable, x: torch.Tensor, first: torch.Tensor, span: float, what: str) -> None:
    """Determinism, batch independence and sensitivity; each only where the earlier ones leave it meaningful."""
    second, error = _run(run, x)
    deterministic = error is None and isinstance(second, torch.Tensor) and second.shape == first.shape \
        and _max_diff(first, second) <= 1e-4 * span
    if deterministic:
        report.findings.append(Finding("determinism", "ok", "same input, same output"))
    else:
        detail = f"differing by up to {_max_diff(first, second):.3g}" if error is None and isinstance(second, torch.Tensor) \
            and second.shape == first.shape else f"a different result ({error or 'another shape'})"
        report.findings.append(Finding("determinism", "fail", f"the same input twice gave {what} {detail}: dropout or "
                                       "batch-norm in training mode (call .eval()), or noise drawn inside the model "
                                       "(draw it from a fixed seed)"))
        report.findings.append(Finding("batch", "warn", "not checked: the output is not deterministic"))
    if deterministic:
        one, error = _run(run, x[:1])
        if error is None and isinstance(one, torch.Tensor) and one.shape == (1, *first.shape[1:]):
            diff = _max_diff(one, first[:1])
            if diff > 1e-3 * span:
                report.findings.append(Finding("batch", "fail", f"a sample alone gives {what} differing by up to {diff:.3g} "
                                               "from the same sample inside a batch: the batch members influence each "
                                               "other (batch-norm in training mode?)"))
            else:
                report.findings.append(Finding("batch", "ok", "samples are independent of their batch"))
        else:
            report.findings.append(Finding("batch", "fail", f"a batch of one failed: {error or 'wrong output shape'} "
                                           "(batch-norm in training mode?)"))
    if not bool(torch.isfinite(first.float()).all()):
        report.findings.append(Finding("sensitivity", "warn", "not checked: the output has NaN or infinite values"))
    elif _max_diff(first, first[:1].expand_as(first)) <= 1e-4 * span:
        report.findings.append(Finding("sensitivity", "fail", f"every input gave the same {what}: the output ignores the input"))
    else:
        report.findings.append(Finding("sensitivity", "ok", f"different inputs give different {what}"))


def _check_generator(report: ModelReport, spec: str, device: torch.device, batch: int, seed: int) -> None:
    name, _, arg = spec.partition(":")
    if name in OPENERS:
        raw = OPENERS[name](arg or None, device)
        if isinstance(raw.run, Generator):
            decl, run = GeneratorDecl(raw.run.latent_dim), raw.run.synthesize
        else:
            decl, run = GeneratorDecl.from_dict(raw.meta, raw.source), raw.run
        identity = raw.identity
    else:
        generator = load_generator(spec, device)
        decl, run, identity = GeneratorDecl(generator.latent_dim), generator.synthesize, generator.identity
    report.findings.append(Finding("load", "ok", f"latent_dim {decl.latent_dim}, range {list(decl.output_range)}, "
                                                 f"layout {decl.output_layout}; identity {identity}"))
    z = torch.randn(batch, decl.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    out, error = _run(run, z)
    if error is not None:
        report.findings.append(Finding("run", "fail", f"rendering {batch} latents raised {error}"))
        return
    findings = check_images(out, batch, decl)
    report.findings += findings
    if any(f.status == "fail" and f.check in ("type", "dtype", "shape") for f in findings):
        return
    _common_checks(report, run, z, out, decl.output_range[1] - decl.output_range[0], "images")


def _check_extractor(report: ModelReport, spec: str, device: torch.device, batch: int, seed: int, size: int) -> None:
    name, _, arg = spec.partition(":")
    if name in OPENERS:
        raw = OPENERS[name](arg or None, device)
        if isinstance(raw.run, Extractor):
            extractor = raw.run
            decl, run, x = ExtractorDecl(extractor.features), extractor.forward, probe_images(batch, size, seed)
        else:
            wrapper = UserExtractor(raw)
            decl, run = wrapper.decl, raw.run
            x = wrapper.prepare(probe_images(batch, decl.input_size or size, seed))
        identity = raw.identity
    else:
        extractor = load_extractor(spec, device)
        decl, run, identity = ExtractorDecl(extractor.features), extractor.forward, extractor.identity
        x = probe_images(batch, size, seed)
    kinds = sorted({f.kind for f in decl.features})
    report.findings.append(Finding("load", "ok", f"{len(decl.features)} features ({', '.join(kinds)}), input "
                                                 f"{decl.input_size or 'any size'} {decl.input_layout} in "
                                                 f"{list(decl.input_range)}; identity {identity}"))
    x = x.to(device)
    out, error = _run(run, x)
    if error is not None:
        report.findings.append(Finding("run", "fail", f"labelling {batch} images raised {error}"))
        return
    findings = check_features(out, batch, decl)
    report.findings += findings
    if any(f.status == "fail" and f.check in ("type", "dtype", "shape") for f in findings):
        return
    _common_checks(report, run, x, out, 1.0, "features")
    values = out.float()
    constant = [f.name for j, f in enumerate(decl.features) if float(values[:, j].max() - values[:, j].min()) < 1e-6]
    if constant:
        report.findings.append(Finding("variation", "warn", f"constant over {batch} varied test images: {', '.join(constant)}"))


def guess_kind(spec: str) -> Kind:
    """'generator' or 'extractor' for ``spec``: by registry name, else by what a user model declares."""
    from .extractors import available as extractor_names
    from .generators import available as generator_names

    name, _, arg = spec.partition(":")
    in_gen, in_ext = name in generator_names(), name in extractor_names()
    if in_gen != in_ext:
        return "generator" if in_gen else "extractor"
    if name in OPENERS:
        meta = OPENERS[name](arg or None, torch.device("cpu")).meta
        declares_gen = "latent_dim" in meta
        declares_ext = "features" in meta or "feature_names" in meta
        if declares_gen != declares_ext:
            return "generator" if declares_gen else "extractor"
    raise TlganError(f"cannot tell whether '{spec}' is a generator or an extractor; say --kind generator or --kind extractor")


def check_model(spec: str, kind: Kind = "generator", device: str | torch.device | None = "cpu", batch: int = 4,
                seed: int = 0, size: int = 128) -> ModelReport:
    """Load ``spec`` as a generator or extractor, run it on a tiny batch and report every problem found.

    size: side of the probe images for extractors that do not declare an input size.
    Never raises for problems of the model itself: they are findings ('fail').
    """
    if kind not in ("generator", "extractor"):
        raise TlganError(f"kind must be 'generator' or 'extractor', got {kind!r}")
    if batch < 2:
        raise TlganError("check-model needs a batch of at least 2")
    report = ModelReport(spec, kind)
    device = resolve_device(device)
    try:
        if kind == "generator":
            _check_generator(report, spec, device, batch, seed)
        else:
            _check_extractor(report, spec, device, batch, seed, size)
    except TlganError as exc:
        report.findings.append(Finding("load", "fail", str(exc)))
    return report
