"""Edit state shared by every front end: a latent, its knob values, locks, and the edits that made it.

An Editor is rebuilt exactly from (seed, edits): each Edit records the locks
in force when it was made, so replaying the list reproduces the latent bit
for bit. Front ends (CLI, web, notebook) hold an Editor and never do the
math themselves.

Two modes, chosen per edit (``Edit.exact``) and for new edits by
``Editor.exact``: *linear* moves z along the knob's global axis with the locked
axes projected out (TL-GAN; instant; locked knob *values* stay exact, the
picture may drift; ``typicality`` reports when the latent leaves the region of
typical faces), and *exact* follows a per-face path on the extractor's readings
(editing/exact.py): the knob's value is the standardised reading, and locked
readings stay within a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from tlgan.axes.math import knob_values, lock_direction, move_to_value
from tlgan.axes.spaces import match_space
from tlgan.axes.store import AxisSet
from tlgan.editing.exact import (
    COMPANIONS,
    LOOKS,
    ExactResult,
    ExactSettings,
    Guard,
    ReadingModel,
    check_differentiable,
    exact_move,
    exact_outputs,
    feature_stats,
    fixed_cpu_threads,
    knob_features,
    softmax_ratio_readings,
    typicality,
)
from tlgan.editing.identity import DEFAULT_TOLERANCE, IDENTITY, IdentityCheck, IdentityWatch, identity_lock_readings
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.fused import module_device
from tlgan.sampling.latents import check_seed
from tlgan.sampling.spaces import face_latent

DEFAULT_STEP = 0.4
MAX_KNOB = 10.0  # |σ| beyond this leaves the latent distribution: refused, not clamped
# A value that sums steps (9.6 + 0.4) may land a rounding error past the end: inside it, not refused.
_ROUNDING = 1e-9


@dataclass(frozen=True)
class Edit:
    """One knob move: ``op`` is 'set' (value = target σ) or 'step' (value = change in σ), under ``locks``.

    ``exact``: the value is the knob's standardised reading and the move follows
    the per-face path that holds the locked readings (see editing/exact.py).
    """

    op: str
    knob: str
    value: float
    locks: tuple[str, ...] = ()
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {"op": self.op, "knob": self.knob, "value": self.value, "locks": list(self.locks)}
        return {**out, "exact": True} if self.exact else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Edit:
        try:
            return cls(str(data["op"]), str(data["knob"]), float(data["value"]), tuple(data.get("locks", ())),
                       bool(data.get("exact", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise TlganError(f"malformed edit {data!r}: {exc}") from None


class Editor:
    """Holds a face's latent and moves it along feature axes.

    Args:
        generator: the Generator the axes belong to (checked).
        axes: the AxisSet with the knobs.
        seed: the starting face (``latent_for_seed``, or NVlabs' convention with seeds='nvlabs').
        layers: for StyleGAN axes made in w, the layer range the knobs move ('0-5', 'coarse', ...).
        extractor: what exact edits read (default: the axes' own extractors, loaded when first needed).
        exact: the mode of new edits made with ``set``/``step``.
        settings: tolerances of exact edits.
        identity_tolerance: how far from the start face (descriptor distance) exact edits with
            identity locked may go; linear edits warn past it.
        companions, looks: knob -> the knobs (``exact.COMPANIONS``) and face-mesh readings
            (``exact.LOOKS``) an exact move of it leads along; ``{}`` leads none (``_followers``).

    Identity: ``IDENTITY`` ('identity') may be locked like a knob. Exact edits then also hold the
    face's identity reading (editing/identity.py) within ``identity_tolerance`` of the face it
    started as; linear edits cannot hold it and only measure it (``identity()``).

    A StyleGAN generator is viewed in the axis set's space (w, w+); there a knob's value is
    its position along the axis relative to the mean w, divided by the axis' stored spread.
    """

    def __init__(self, generator: Generator, axes: AxisSet, seed: int = 0, layers: str | None = None,
                 seeds: str = "tlgan", extractor: Extractor | None = None, exact: bool = False,
                 settings: ExactSettings | None = None, identity_tolerance: float = DEFAULT_TOLERANCE,
                 identity: IdentityWatch | None = None,
                 companions: dict[str, tuple[str, ...]] | None = None,
                 looks: dict[str, tuple[str, ...]] | None = None) -> None:
        axes.check_generator(generator)
        generator, axes = match_space(generator, axes, layers, seeds)
        axes.check_generator(generator)
        self.generator = generator
        self._device = module_device(generator)
        self.axes = axes
        self._axes64 = axes.axes.to(torch.float64)
        self._spread = axes.spread.to(torch.float64) if axes.spread is not None else torch.ones(len(axes), dtype=torch.float64)
        self.locks: set[str] = set()
        self.extractor = extractor
        self.exact = exact
        self.settings = settings or ExactSettings()
        self.companions = COMPANIONS if companions is None else companions
        self.looks = LOOKS if looks is None else looks
        self._reader: ReadingModel | None = None
        self._identity = identity
        self.identity_tolerance = float(identity_tolerance)
        self._identity_index: int | None = None   # the identity reading's index in the reader, once added
        self.new_face(seed)

    # ---- state -------------------------------------------------------------
    def new_face(self, seed: int) -> None:
        """Start over from the face called ``seed``: no edits; locks are kept."""
        self.seed = check_seed(seed)
        self.z = face_latent(self.generator, seed).to(torch.float64)
        self._identity_ref: torch.Tensor | None = None
        self.edits: list[Edit] = []
        self.reports: list[dict[str, Any] | None] = []  # per edit: what an exact edit did (None for linear ones)
        self.start_latent: torch.Tensor | None = None

    def new_latent(self, latent: torch.Tensor) -> None:
        """Start over from a given latent (D,) (e.g. an inverted photo) instead of a seed: no edits; locks kept.

        ``reset`` comes back to it; ``seed`` keeps its last value but no longer describes the face.
        """
        dim = self._axes64.shape[1]
        if not isinstance(latent, torch.Tensor) or latent.shape != (dim,) or not bool(torch.isfinite(latent).all()):
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise TlganError(f"latent must be a finite tensor of shape ({dim},), got {shape}")
        self.start_latent = latent.detach().to("cpu", torch.float64).clone()
        self.z = self.start_latent.clone()
        self._identity_ref = None
        self.edits = []

    def random_face(self, rng: torch.Generator | None = None) -> int:
        """Jump to a random seed; returns it."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng).item())
        self.new_face(seed)
        return seed

    def values(self) -> dict[str, float]:
        """Every knob's value: the latent's position along its axis, in σ."""
        vals = knob_values(self.z[None], self._axes64)[0] / self._spread
        return {n: float(v) for n, v in zip(self.axes.names, vals)}

    def value(self, knob: str) -> float:
        i = self.axes.index(knob)
        return float(self.z @ self._axes64[i] / self._spread[i])

    def lock(self, knob: str, locked: bool = True) -> None:
        self._check_lock(knob)
        (self.locks.add if locked else self.locks.discard)(knob)

    def set_locks(self, knobs: Iterable[str]) -> None:
        knobs = set(knobs)
        for k in knobs:
            self._check_lock(k)
        self.locks = knobs

    def _is_identity(self, name: str) -> bool:
        return name == IDENTITY and IDENTITY not in self.axes.names  # a knob of that name keeps it

    def _check_lock(self, name: str) -> None:
        if not self._is_identity(name):
            self.axes.index(name)

    def _knob_locks(self, locks: Iterable[str]) -> list[str]:
        """The knobs among ``locks`` (identity left out), in axis order."""
        return sorted((k for k in locks if not self._is_identity(k)), key=self.axes.index)

    # ---- edits -------------------------------------------------------------
    def direction(self, knob: str, locks: Iterable[str] | None = None) -> torch.Tensor:
        """Unit direction (D,) float64 that moves ``knob`` while the locked knobs stay put."""
        locks = self._knob_locks(self.locks if locks is None else locks)  # identity: measured, not held, here
        i = self.axes.index(knob)
        if knob in locks:
            raise TlganError(f"knob '{knob}' is locked; unlock it to move it")
        locked = self._axes64[[self.axes.index(k) for k in locks]] if locks else self._axes64[:0]
        try:
            return lock_direction(self._axes64[i], locked)
        except TlganError:
            raise TlganError(f"cannot move '{knob}' with {', '.join(locks)} locked: their axes leave it no room") from None

    def apply(self, edit: Edit) -> None:
        """Apply one Edit (validated) and record it."""
        if edit.op not in ("set", "step"):
            raise TlganError(f"edit op must be 'set' or 'step', got {edit.op!r}")
        if not math.isfinite(edit.value):
            raise TlganError(f"value for '{edit.knob}' must be finite, got {edit.value}")
        for k in edit.locks:
            self._check_lock(k)
        if edit.exact:
            self.reports.append(self._apply_exact(edit).to_dict())
            self.edits.append(edit)
            return
        target = edit.value if edit.op == "set" else self.value(edit.knob) + edit.value
        if abs(target) > MAX_KNOB + _ROUNDING:
            raise TlganError(f"'{edit.knob}' would go to {target:.3g}σ; knob values must stay within ±{MAX_KNOB:g}σ")
        d = self.direction(edit.knob, edit.locks)
        i = self.axes.index(edit.knob)
        self.z = move_to_value(self.z, self._axes64[i], d, target * float(self._spread[i]))
        self.edits.append(edit)
        self.reports.append(None)

    def set(self, knob: str, value: float) -> None:
        """Set ``knob`` to ``value`` σ (in exact mode: its standardised reading), honouring the current locks."""
        self.apply(Edit("set", knob, float(value), tuple(sorted(self.locks)), self.exact))

    def step(self, knob: str, delta: float = DEFAULT_STEP) -> None:
        """Change ``knob`` by ``delta`` σ (TL-GAN's +/- click), honouring the current locks."""
        self.apply(Edit("step", knob, float(delta), tuple(sorted(self.locks)), self.exact))

    # ---- exact mode --------------------------------------------------------
    def reader(self) -> ReadingModel:
        """The ReadingModel exact edits use (built once; loads the axes' extractors if none was given)."""
        if self._reader is None:
            if self.extractor is None:
                from tlgan.models.extractors import load_extractor

                self.extractor = load_extractor(self.axes.extractor_spec(), self._device)
            check_differentiable(self.extractor)  # before deriving stats: refuse ONNX at once
            mean, std = feature_stats(self.axes, self.generator, self.extractor)
            self._reader = ReadingModel(self.generator, self.extractor, mean, std)
        return self._reader

    def _features(self) -> list[str | None]:
        return knob_features(self.axes, self.reader().names)

    def _apply_exact(self, edit: Edit) -> ExactResult:
        reader = self.reader()
        feats = self._features()
        k = self.axes.index(edit.knob)
        if feats[k] is None:
            raise TlganError(f"knob '{edit.knob}' reads no extractor feature, so exact mode cannot move it; "
                             "use linear mode")
        if edit.knob in edit.locks:
            raise TlganError(f"knob '{edit.knob}' is locked; unlock it to move it")
        target = reader.names.index(feats[k])
        if edit.op == "set":
            goal = edit.value
        else:
            with fixed_cpu_threads(reader.device):
                goal = float(reader.read(self.z, [target])[0]) + edit.value
        if abs(goal) > MAX_KNOB + _ROUNDING:
            raise TlganError(f"'{edit.knob}' would go to {goal:.2f}σ; knob values must stay within ±{MAX_KNOB:g}σ")
        locks = self._knob_locks(edit.locks)
        read_locks = [lk for lk in locks if feats[self.axes.index(lk)] is not None]
        lin_locks = [lk for lk in locks if feats[self.axes.index(lk)] is None]
        lock_idx = [reader.names.index(feats[self.axes.index(lk)]) for lk in read_locks]
        moved, shift, lock_idx, read_locks = self._held_among_themselves(reader, target, lock_idx, read_locks)
        follow = []
        keep_person = any(self._is_identity(k) for k in edit.locks)
        for index, rate, name in [] if keep_person else self._followers(edit, reader, target, goal, locks):
            follow.append((len(lock_idx), rate))
            lock_idx.append(index)
            read_locks.append(name)
        guard = None
        if keep_person:
            held, guard = self._identity_readings()
            lock_idx, read_locks = [*lock_idx, *held], [*read_locks, *[IDENTITY] * len(held)]
        result = exact_move(
            reader, self.z, moved, goal - shift, locks=lock_idx, lock_names=read_locks,
            linear_locks=self._axes64[[self.axes.index(lk) for lk in lin_locks]] if lin_locks else None,
            linear_names=lin_locks, axis=self._axes64[k], target_name=edit.knob, settings=self.settings, guard=guard,
            follow=follow, shown=shift)
        if result.blocked_by in self.companions.get(edit.knob, ()) and result.blocked_by in self.axes.names:
            result.message += " (lock it to leave it still)"
        self.z = result.z
        return result

    def _held_among_themselves(self, reader: ReadingModel, target: int, lock_idx: list[int],
                               read_locks: list[str]) -> tuple[int, float, list[int], list[str]]:
        """(the reading the path moves, its offset from the knob's own reading here, lock indices, lock names).

        When the knob is a class of a softmax and every other class is held, the others are held among
        themselves and the knob moves against them (``softmax_ratio_readings``): "more happy, nothing else
        changes in the classifier's eyes". Otherwise the knob's own reading moves and the locks are unchanged.
        """
        group = next((g for g in reader.softmax_groups if target in g), ())
        others = [i for i in group if i != target]
        if not others or not all(i in lock_idx for i in others):
            return target, 0.0, lock_idx, read_locks
        moved, ratios = softmax_ratio_readings(reader, target, others)
        names = [read_locks[lock_idx.index(i)] for i in others]
        kept = [j for j, i in enumerate(lock_idx) if i not in others]
        with fixed_cpu_threads(reader.device):
            own, against = reader.read(self.z, [target, moved]).tolist()
        return (moved, own - against, [lock_idx[j] for j in kept] + ratios,
                [read_locks[j] for j in kept] + names[1:])

    def _followers(self, edit: Edit, reader: ReadingModel, target: int, goal: float,
                   locks: Iterable[str]) -> list[tuple[int, float, str]]:
        """The readings that move with ``edit.knob`` in an exact edit, as (reader index, rate, name): its unlocked
        companion knobs (``self.companions``) and its look readings from the face mesh (``self.looks``; no knob,
        so no lock holds them). Each is led to where linear mode takes it on this face, reached when the knob's
        reading reaches its goal: rate = (its reading at linear mode's end − now) / (goal − the knob's reading
        now), linear mode's end being the plain move along the knob's axis to the same knob value.

        Without them the path may raise the knob's classifier reading by whatever image change the locks leave
        cheapest: 'happy' then rose with half of linear mode's smile, and with the mouth's width held too it had
        only the corners left, which MTCNN's five points cannot see (docs/exact.md, "Readings that follow the
        look"). The corners count even with the width free: leading the width alone gave 0.78× linear mode's
        smile on 12 unseen faces, both 0.87×, at about twice the time of a 1σ move (the mesh is read through
        the jitters and mirrored). One that linear mode does not move the knob's way on this face is left out. With
        identity held none moves (the caller's rule: forcing the mouth spent the identity budget at the first step).
        """
        feats = self._features()
        names = [n for n in self.companions.get(edit.knob, ()) if n not in locks and n != edit.knob
                 and n in self.axes.names and feats[self.axes.index(n)] is not None]
        index = [reader.names.index(feats[self.axes.index(n)]) for n in names]
        looks = self.looks.get(edit.knob, ())
        if looks:
            mesh = self._mesh_readings(reader)
            names += list(looks)
            index += [mesh[n] for n in looks]
        if not names:
            return []
        k = self.axes.index(edit.knob)
        value = edit.value if edit.op == "set" else self.value(edit.knob) + edit.value
        value = max(-MAX_KNOB, min(MAX_KNOB, value))
        linear_end = move_to_value(self.z, self._axes64[k], self._axes64[k], value * float(self._spread[k]))
        idx = [target, *index]
        with fixed_cpu_threads(reader.device):
            now, there = reader.read(self.z, idx), reader.read(linear_end, idx)
        span = goal - float(now[0])
        if abs(span) < self.settings.goal_tol:
            return []
        rates = ((there[1:] - now[1:]) / span).tolist()
        return [(i, rate, n) for i, rate, n in zip(index, rates, names) if rate > 0]

    def _mesh_readings(self, reader: ReadingModel) -> dict[str, int]:
        """The face mesh's readings in ``reader`` (added on first use), by name: read through the jitters like
        the other networks, in units of their spread over default faces."""
        from tlgan.models.extractors.facemesh import FEATURES, SPREAD

        if "face mesh" not in reader.names:
            from tlgan.models.extractors import load_extractor

            mesh = load_extractor("facemesh", self._device)
            spread = torch.tensor(SPREAD, device=self._device)
            reader.add_readings("face mesh", lambda images: exact_outputs(mesh, images, reader.jitter) / spread,
                                len(FEATURES))
        first = reader.names.index("face mesh")
        return {f.name: first + j for j, f in enumerate(FEATURES)}

    # ---- identity ----------------------------------------------------------
    @property
    def identity_watch(self) -> IdentityWatch:
        """What reads identity (loads dlib's face-recognition network on first use)."""
        if self._identity is None:
            self._identity = IdentityWatch(self.generator, tolerance=self.identity_tolerance)
        return self._identity

    def _identity_reference(self) -> torch.Tensor:
        """Descriptor (128,) of the face this editor started from (its seed's, or the latent given)."""
        if self._identity_ref is None:
            start = self.start_latent if self.start_latent is not None else face_latent(self.generator, self.seed)
            with fixed_cpu_threads(self._device):
                self._identity_ref = self.identity_watch.reference(start.to(torch.float64))
        return self._identity_ref

    def _identity_readings(self) -> tuple[list[int], Guard]:
        """The reader's indices of the held identity readings, set up for a move from the current face, and the
        guard on the whole distance they stand for.

        The readings (K descriptor coordinates) are added to the reader once; they read the start face's
        descriptor and the landmarks of the face the move starts from (found here: a face without them is
        refused before anything moves). The coordinates leave most of the descriptor free, so the path is also
        guarded: it ends before the first point whose whole distance from the start face (read at the same
        landmarks and at the face's own, the larger: ``IdentityWatch.distance_at``) is beyond the tolerance.
        """
        watch = self.identity_watch
        with fixed_cpu_threads(self._device):
            reference, points, basis = self._identity_reference(), watch.points(self.z), watch.basis
        self._identity_fn = identity_lock_readings(watch.model, reference, points, basis, watch.tolerance,
                                                   self.settings.lock_tol)
        if self._identity_index is None:
            first = self.reader().add_readings(IDENTITY, lambda images: self._identity_fn(images), len(basis))
            self._identity_index = first[0]
        guard = Guard(IDENTITY, lambda z: watch.distance_at(z, reference, points), watch.tolerance)
        return list(range(self._identity_index, self._identity_index + len(basis))), guard

    def identity(self) -> IdentityCheck:
        """How far the current face is from the face it started as (dlib descriptor distance), with its scale."""
        ref = self._identity_reference()
        with fixed_cpu_threads(self._device):
            return self.identity_watch.check(self.z, ref)

    def last_report(self) -> dict[str, Any] | None:
        """What the last edit did, when it was exact (goal, reached, steps, blocking lock, message); else None."""
        return self.reports[-1] if self.reports else None

    @torch.no_grad()
    def readings(self) -> dict[str, dict[str, float]]:
        """Per knob that reads a feature: {'value': standardised reading (the exact knob value), 'raw': the reading}."""
        reader = self.reader()
        with fixed_cpu_threads(reader.device):  # the same values as exact moves see, at any thread count
            image = self.generator.synthesize(self.z.to(self._device, torch.float32)[None])
            feats = self._features()
            idx = [reader.names.index(f) for f in feats if f is not None]
            values = reader.readings(image, idx).cpu() if idx else torch.zeros(0)
        raw = self.extractor(image)[0].to(torch.float64).cpu()  # type: ignore[misc]
        out: dict[str, dict[str, float]] = {}
        k = 0
        for name, feat in zip(self.axes.names, feats):
            if feat is not None:
                out[name] = {"value": float(values[k]), "raw": float(raw[reader.names.index(feat)])}
                k += 1
        return out

    def exact_values(self) -> dict[str, float]:
        """Exact knob values: each knob's standardised reading (knobs without a reading are left out)."""
        return {name: r["value"] for name, r in self.readings().items()}

    def typicality(self) -> dict[str, Any]:
        """How typical the latent still is under N(0, I): ‖z‖ against its chi distribution, with ``warn``."""
        return typicality(self.z)

    def reset(self) -> None:
        """Back to the face's own latent (drop all edits)."""
        if self.start_latent is not None:
            self.new_latent(self.start_latent)
        else:
            self.new_face(self.seed)

    @classmethod
    def replay(cls, generator: Generator, axes: AxisSet, seed: int, edits: Iterable[Edit],
               locks: Iterable[str] = (), latent: torch.Tensor | None = None, extractor: Extractor | None = None,
               settings: ExactSettings | None = None, **space: Any) -> Editor:
        """Rebuild the exact state reached from ``seed`` (or from ``latent`` when given) by ``edits``;
        ``locks`` become the current locks.

        ``space``: the Editor's ``layers`` / ``seeds`` options the edits were made with.
        """
        editor = cls(generator, axes, seed, extractor=extractor, settings=settings, **space)
        if latent is not None:
            editor.new_latent(latent)
        for edit in edits:
            editor.apply(edit)
        editor.set_locks(locks)
        return editor

    # ---- output ------------------------------------------------------------
    def latent(self) -> torch.Tensor:
        """The current latent (D,) as float32."""
        return self.z.to(torch.float32)

    @torch.inference_mode()
    def render(self) -> torch.Tensor:
        """Image (3, H, W) in [-1, 1] of the current latent, on CPU.

        The interactive path: one face, no batching. The latent is finite by
        construction (every edit is validated), so the generator's input check
        is skipped; see benchmarks/render_latency.py for its cost.
        """
        z = self.z.to(self._device, torch.float32)[None]
        return self.generator.synthesize(z)[0].float().cpu()
