"""tlgan build, fit and discover: sample, label and fit axis sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tlgan.axes.methods import METHODS, UNSUPERVISED
from tlgan.errors import TlganError

from .common import absolute_spec, format_info, is_uri, ray_options


@click.command()
@click.option("--generator", default="digiface", show_default=True,
              help="generator spec, e.g. digiface or pggan:FILE (entrypoint:MODULE:FUNCTION runs your Python code)")
@click.option("--extractor", default=None, help="comma-separated extractors [default: emotion,landmarks,imagestats,facelight,agegender]")
@click.option("--n", "n", type=int, default=20000, show_default=True, help="number of samples")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N")
@click.option("--batch-size", type=click.IntRange(1, 1 << 20), default=None,
              help="images per forward pass [default: 32 on CPU, 8192 on CUDA]")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True,
              help="precision of rendering and labelling (autocast); extractors that need float32 keep it")
@click.option("--compile", "compile_", is_flag=True, help="run the models through torch.compile (slow start, faster on GPU)")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="CPU threads [default: the CPUs this process may use; env TLGAN_THREADS]")
@click.option("--method", type=click.Choice(METHODS), default="tlgan", show_default=True,
              help="fitting method (see tlgan fit --help; sefa and pca run tlgan discover, without sampling)")
@click.option("--ridge", type=float, default=None, help="ridge penalty for --method ridge")
@click.option("--percent", type=float, default=None, help="svm: top/bottom percentage of each feature [default: 2]")
@click.option("--C", "c", type=float, default=None, help="svm/logistic: inverse regularisation strength [default: 1]")
@click.option("--shard-size", type=click.IntRange(1, 1 << 20), default=4096, show_default=True,
              help="samples per resumable shard")
@click.option("--samples", "samples_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the labelled samples (resumable) [default: OUT.samples]")
@click.option("--store-samples/--no-store-samples", default=True, show_default=True,
              help="keep labelled samples on disk (resumable, refittable) or fit while sampling (flat memory, "
                   "nothing written but the axes; an interrupted run starts over)")
@click.option("--space", type=click.Choice(["z", "w", "w+"]), default=None,
              help="latent space to sample and fit in [default: w for StyleGAN, else z]")
@click.option("--truncation", "truncation", type=click.FloatRange(0, 2), default=1.0, show_default=True,
              help="StyleGAN: sample w = w_avg + psi (w - w_avg) (recorded in the axis set)")
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
@ray_options
def build(generator: str, extractor: str | None, n: int, seed: int, device: str, batch_size: int | None, dtype: str,
          compile_: bool, threads: int | None, method: str, ridge: float | None, percent: float | None,
          c: float | None, shard_size: int, samples_dir: str | None, store_samples: bool, space: str | None,
          truncation: float, out: str, ray_address: str | None, ray_workers: int | None, ray_ship: bool) -> None:
    """Sample N latents, render and label them, and fit one axis per feature.

    \b
    Examples:
      tlgan build --n 20000 --out my-axes.safetensors
      tlgan build --n 1000000 --device cuda --dtype float16 --no-store-samples --out big.safetensors
      tlgan build --n 1000000 --ray HEAD:6379 --samples /shared/run1 --out big.safetensors
      tlgan build --generator stylegan:ffhq.pkl --space w --truncation 0.7 --n 20000 --out ffhq-w.safetensors
    Interrupt with Ctrl-C at any time: rerunning the same command resumes (with --store-samples).
    With --ray the shards are labelled on a Ray cluster (docs/scale.md): the same file as without.
    """
    from tlgan.atomic import prepare_output
    from tlgan.axes.fit import fit_streaming, resolve_method
    from tlgan.axes.spaces import with_space
    from tlgan.models.extractors import DEFAULT_EXTRACTORS, load_extractor
    from tlgan.models.generators import load_generator
    from tlgan.sampling.fused import LabelOptions
    from tlgan.sampling.pipeline import run_samples, set_cpu_threads
    from tlgan.sampling.spaces import space_view

    set_cpu_threads(threads)
    if n <= 0:
        raise TlganError(f"--n must be positive, got {n}")
    prepare_output(out)  # an output that cannot be written fails now, not after the sampling
    if method in UNSUPERVISED:
        run_discover(method, 10, generator, extractor, n, seed, None, 64, device, out, space, truncation)
        return
    if samples_dir and not store_samples:
        raise TlganError("--samples names a folder to store samples in; drop it or --no-store-samples")
    if not store_samples:
        resolve_method(method, ridge)  # fail before hours of sampling, not after
    if ray_address:
        if space not in (None, "z") or truncation != 1.0:
            raise TlganError("--ray builds sample in z for now; drop --space/--truncation or build without --ray")
        samples = (samples_dir or str(Path(out).with_suffix(".samples"))) if store_samples else None
        _build_on_ray(ray_address, ray_workers, ray_ship, generator, extractor or DEFAULT_EXTRACTORS, device,
                      LabelOptions(batch_size, dtype, compile_), n, seed, method, ridge, percent, c, shard_size,
                      samples, out)
        return
    gen = space_view(load_generator(generator, device), space, truncation)
    ext = load_extractor(extractor or DEFAULT_EXTRACTORS, device)
    if not store_samples:
        click.echo(f"{gen.identity} + {ext.name}: {n:,} samples, fitted while sampling", err=True)
        axis_set = fit_streaming(gen, ext, n, seed, method=method, ridge=ridge, batch_size=batch_size, dtype=dtype,
                                 compile=compile_)
        _save(with_space(axis_set, gen, seed), out)
        return
    samples = Path(samples_dir) if samples_dir else Path(out).with_suffix(".samples")
    click.echo(f"{gen.identity} + {ext.name}: {n:,} samples into {samples}", err=True)
    run_samples(gen, ext, n, seed, samples, batch_size=batch_size, shard_size=shard_size, dtype=dtype,
                compile=compile_)
    _fit_and_save(str(samples), method, ridge, out, percent, c)


def _build_on_ray(address: str, workers: int | None, ship: bool, generator: str, extractor: str, device: str,
                  options: Any, n: int, seed: int, method: str, ridge: float | None, percent: float | None,
                  c: float | None, shard_size: int, samples: str | None, out: str) -> None:
    """``tlgan build --ray``: the shards are labelled by a Ray cluster's workers, the axes fitted here."""
    from tlgan.axes.distributed import build_on_cluster
    from tlgan.sampling.distributed import Cluster, WorkerPool

    if samples is not None and not is_uri(samples):
        samples = str(Path(samples).resolve())  # workers may start elsewhere: give them the full path
    with Cluster(address, ship_code=ship) as cluster:
        with WorkerPool(cluster, absolute_spec(generator), absolute_spec(extractor), device, options, workers) as pool:
            where = f" into {samples}" if samples else ", fitted while sampling"
            click.echo(f"{pool.info['generator']} + {pool.info['extractor']}: {n:,} samples{where} on "
                       f"{len(pool.actors)} Ray worker(s) ({pool.device}) at {address}", err=True)
            axis_set = build_on_cluster(pool, n, seed, method=method, ridge=ridge, samples=samples,
                                        shard_size=shard_size, percent=percent, c=c)
    _save(axis_set, out)


def _fit_and_save(samples: str, method: str, ridge: float | None, out: str, percent: float | None = None,
                  c: float | None = None) -> None:
    import torch

    from tlgan.axes.fit import fit_axes
    from tlgan.axes.spaces import SPREAD_SAMPLES, with_space_from_samples
    from tlgan.sampling.pipeline import iter_shards, read_manifest

    axis_set = fit_axes(samples, method=method, ridge=ridge, percent=percent, c=c)
    if "@" in axis_set.generator:  # fitted in StyleGAN's w or w+: record the space and each axis' spread
        latents = torch.cat([z for _, z, _ in iter_shards(samples, min(read_manifest(samples).n, SPREAD_SAMPLES))])
        axis_set = with_space_from_samples(axis_set, latents)
    _save(axis_set, out)


def _save(axis_set: Any, out: str) -> None:
    from tlgan import timing

    axis_set.save(out)
    took = timing.summary()  # timings are printed, never stored: the same command writes the same bytes
    click.echo(f"wrote {len(axis_set)} axes to {out}" + (f" ({took})" if took else ""), err=True)
    click.echo(format_info(axis_set))


@click.command()
@click.argument("samples", type=click.Path(file_okay=False))
@click.option("--method", type=click.Choice(METHODS), default="tlgan", show_default=True,
              help="tlgan (least squares in link space), ridge, svm (InterFaceGAN) or logistic; see docs/methods.md")
@click.option("--ridge", type=float, default=None, help="ridge penalty for --method ridge")
@click.option("--percent", type=float, default=None, help="svm: top/bottom percentage of each feature [default: 2]")
@click.option("--C", "c", type=float, default=None, help="svm/logistic: inverse regularisation strength [default: 1]")
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
def fit(samples: str, method: str, ridge: float | None, percent: float | None, c: float | None, out: str) -> None:
    """Fit axes from an existing sample folder (made by tlgan build).

    Unsupervised axes (sefa, pca) need the generator instead: see tlgan discover.
    """
    _fit_and_save(samples, method, ridge, out, percent, c)


@click.command()
@click.option("--method", type=click.Choice(["sefa", "pca"]), required=True)
@click.option("--components", "-k", type=click.IntRange(1, 4096), default=10, show_default=True,
              help="number of axes")
@click.option("--generator", default="digiface", show_default=True, help="generator spec")
@click.option("--extractor", default=None,
              help="extractors that label each axis [default: emotion,landmarks,imagestats,facelight,agegender]; 'none' skips labelling")
@click.option("--n", "n", type=int, default=5000, show_default=True, help="pca: sampled latents")
@click.option("--seed", type=int, default=0, show_default=True, help="pca: latent seed")
@click.option("--layer", default=None, help="pca: submodule whose output is analysed [default: first nonlinearity]")
@click.option("--label-faces", type=click.IntRange(2, 100000), default=64, show_default=True,
              help="faces swept to label each axis")
@click.option("--device", default="auto", show_default=True)
@click.option("--space", type=click.Choice(["z", "w"]), default=None,
              help="latent space [default: w for StyleGAN (SeFa on the style weights, PCA of sampled w), else z]")
@click.option("--truncation", type=click.FloatRange(0, 2), default=1.0, show_default=True, help="StyleGAN: psi of sampled w")
@click.option("--layers", default=None,
              help="StyleGAN: w inputs the knobs act on, FIRST-LAST or coarse/middle/fine (SeFa uses their style weights)")
@click.option("--out", type=click.Path(dir_okay=False), default="axes.safetensors", show_default=True)
def discover(method: str, components: int, generator: str, extractor: str | None, n: int, seed: int,
             layer: str | None, label_faces: int, device: str, space: str | None, truncation: float,
             layers: str | None, out: str) -> None:
    """Find unsupervised axes (SeFa or GANSpace PCA), named METHOD_0, METHOD_1, ..., labelled by the extractors.

    \b
    Example:
      tlgan discover --method sefa -k 12 --out sefa.safetensors
      tlgan rename sefa.safetensors sefa_0=pose sefa_3=light
    """
    run_discover(method, components, generator, extractor, n, seed, layer, label_faces, device, out, space, truncation,
                 layers)


def run_discover(method: str, components: int, generator: str, extractor: str | None, n: int, seed: int,
                 layer: str | None, label_faces: int, device: str, out: str, space: str | None = None,
                 truncation: float = 1.0, layers: str | None = None) -> None:
    """What ``tlgan discover`` (and ``tlgan build --method sefa|pca``) do."""
    from tlgan.atomic import prepare_output
    from tlgan.axes.methods.discover import discover_axes
    from tlgan.axes.spaces import parse_layers, with_space
    from tlgan.models.extractors import DEFAULT_EXTRACTORS, load_extractor
    from tlgan.models.generators import load_generator
    from tlgan.sampling.pipeline import set_cpu_threads
    from tlgan.sampling.spaces import space_view

    set_cpu_threads()
    if n <= 0:
        raise TlganError(f"--n must be positive, got {n}")
    prepare_output(out)
    base = load_generator(generator, device)
    rng = None
    if layers is not None:
        if (space or ("w" if "w" in base.spaces else "z")) != "w":
            raise TlganError("--layers needs a StyleGAN in --space w")
        rng = parse_layers(layers, base.num_ws)
    gen = space_view(base, space, truncation, layers=rng)
    ext = None if extractor == "none" else load_extractor(extractor or DEFAULT_EXTRACTORS, device)
    axis_set = discover_axes(gen, method, components, ext, n=n, seed=seed, layer=layer, label_faces=label_faces)
    axis_set = with_space(axis_set, gen, seed)
    if rng is not None:
        axis_set.layers = {name: list(rng) for name in axis_set.names}
    _save(axis_set, out)
    for name in axis_set.names:
        if name in axis_set.descriptions:
            click.echo(f"  {name}: {axis_set.descriptions[name]}")
