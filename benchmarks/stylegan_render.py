"""Render time per image of tlgan's StyleGAN2 with the FFHQ configuration (random weights), at 256 and 1024 px.

FFHQ configs of NVlabs' releases: z = w = 512, 8-layer mapping (lr 0.01), channel_max 512, the 4
highest resolutions marked fp16 (float32 on CPU, half on CUDA), conv_clamp 256, skip ToRGB;
channel_base 32768 at 1024 px (stylegan2-ffhq-1024x1024) and 16384 at 256 px (ffhq-256, 'paper256').
Times ``synthesize_w`` (the synthesis network, what a knob move costs) and ``synthesize`` (mapping
too) for batch 1 and a small batch; prints seconds per image (median of the timed calls).

    python benchmarks/stylegan_render.py [--device cpu] [--sizes 256 1024] [--calls 3] [--batch 4]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import setup, timed

from tlgan.models.generators.stylegan2 import StyleGAN2, StyleGAN2Config


def ffhq_config(resolution: int) -> StyleGAN2Config:
    base = 16384 if resolution <= 256 else 32768
    return StyleGAN2Config(z_dim=512, w_dim=512, img_resolution=resolution, img_channels=3,
                           channels=StyleGAN2Config.channels_for(resolution, base, 512), mapping_layers=8,
                           mapping_features=512, num_fp16_res=4, conv_clamp=256.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 1024])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    device = setup(args.device, args.threads)
    for size in args.sizes:
        torch.manual_seed(0)
        g = StyleGAN2(ffhq_config(size)).eval().requires_grad_(False).to(device)
        params = sum(p.numel() for p in g.parameters())
        for batch in sorted({1, args.batch}):
            z = torch.randn(batch, 512, device=device)
            with torch.inference_mode():
                w = g.mapping(z)
                g.synthesize_w(w)  # warm-up (allocator, kernels)
                synth = [timed(lambda: g.synthesize_w(w), device) / batch for _ in range(args.calls)]
                full = [timed(lambda: g.synthesize(z), device) / batch for _ in range(args.calls)]
            print(f"stylegan2 {size}px ({params / 1e6:.1f} M params) batch {batch}: "
                  f"synthesize_w {statistics.median(synth):.3f} s/image, synthesize(z) {statistics.median(full):.3f} s/image "
                  f"({1 / statistics.median(synth):.2f} images/s)")


if __name__ == "__main__":
    main()
