"""The CLI bad-input matrix: every bad input found by probing, run through the real `tlgan` command.

Prints a Markdown table: case, exit status, first line of stderr (or, for check-model, its FAIL line).
Every row should be a one-line error (exit 1), a click usage error (exit 2) or a clean interrupt (130/143);
"Traceback" or a signal death (negative status) in the table is a bug. Files are crafted in a temporary folder
with the test suite's helpers. Takes a few minutes on 2 CPUs (each command imports torch).

    .venv/bin/python benchmarks/bad_inputs.py [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
TLGAN = shutil.which("tlgan", path=str(Path(sys.executable).parent)) or "tlgan"


def first_line(proc_out: str, proc_err: str) -> str:
    lines = [line for line in proc_err.splitlines() if line.strip() and not line.startswith(("sample+label", "digiface"))]
    if "Traceback" in proc_err:
        return "TRACEBACK: " + proc_err.strip().splitlines()[-1]
    if lines:
        return lines[0]
    fails = [line.strip() for line in proc_out.splitlines() if "FAIL" in line]
    return (fails[0] if fails else (proc_out.strip().splitlines() or [""])[0])


def run(args: list[str], cwd: Path, preexec: Callable[[], None] | None = None) -> tuple[int, str]:
    proc = subprocess.run([TLGAN, *args], capture_output=True, text=True, cwd=cwd, timeout=600, preexec_fn=preexec,
                          check=False)
    return proc.returncode, first_line(proc.stdout, proc.stderr)


def signalled(args: list[str], cwd: Path, signum: int, wait_for: Callable[[], bool]) -> tuple[int, str]:
    proc = subprocess.Popen([TLGAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    deadline = time.time() + 120
    while time.time() < deadline and not wait_for():
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, first_line(out, err)


def make_files(tmp: Path) -> dict[str, Path]:
    """Every crafted bad file, by name."""
    import numpy as np
    from _keras_files import celeba_cnn_layers
    from _tf1_files import dump_pickle, g_paper_variables, write_tf1_pickle
    from test_celeba_cnn import _external_storage
    from test_cli_robustness import _with_header
    from test_legacy_pickles import _RunsShell
    from test_unpickle_safety import _Call, fake_pointer_array

    from tlgan.axes.defaults import DEFAULT_AXES

    files: dict[str, Path] = {}
    (tmp / "afile").write_text("a file, not a folder")
    files["fake_pointer"] = dump_pickle({"direction": fake_pointer_array(), "name": ["a", "b"]}, tmp / "fp.pkl")
    files["bomb"] = dump_pickle(_Call(np.ndarray, (50_000_000, 3), "f8"), tmp / "bomb.pkl", protocol=2)
    files["evil"] = tmp / "evil.pkl"
    files["evil"].write_bytes(pickle.dumps(_RunsShell(tmp / "pwned")))
    variables = g_paper_variables(resolution=8)
    variables[1] = (variables[1][0], fake_pointer_array())
    files["tf1_fake_pointer"] = write_tf1_pickle(tmp / "tf1_fp.pkl", variables, 8)
    files["g_paper_named"] = write_tf1_pickle(tmp / "karras.pkl", g_paper_variables(resolution=8), 8,
                                              names=("G_paper", "D_paper", "G_paper"), numpy1=True)
    files["external_h5"] = _external_storage(tmp / "ext.h5", celeba_cnn_layers(alpha=0.25))
    files["truncated_axes"] = tmp / "truncated.safetensors"
    files["truncated_axes"].write_bytes(DEFAULT_AXES.read_bytes()[:100])
    files["bad_header"] = _with_header(DEFAULT_AXES, tmp / "badheader.safetensors", names=5, latent_dim="x",
                                       quality=None)
    files["bad_version"] = _with_header(DEFAULT_AXES, tmp / "badversion.safetensors", version="abc")
    import torch

    deep = tmp / "deep.pt"
    torch.jit.save(torch.jit.script(torch.nn.Tanh()), str(deep),
                   _extra_files={"tlgan.json": '{"latent_dim": ' + "[" * 100_000 + "]" * 100_000 + "}"})
    files["deep_torchscript"] = deep
    return files


def full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def cases(tmp: Path, f: dict[str, Path]) -> list[tuple[str, Callable[[], tuple[int, str]]]]:
    c = lambda *args, pre=None: (lambda: run(list(args), tmp, pre))
    samples = tmp / "sig.samples"
    return [
        ("edit: unknown knob", c("edit", "--set", "smile=1", "--json")),
        ("edit: --set happy=nan", c("edit", "--set", "happy=nan", "--json")),
        ("edit: --set happy=1e300", c("edit", "--set", "happy=1e300", "--json")),
        ("edit: --seed -3", c("edit", "--seed", "-3", "--json")),
        ("edit: --device tpu", c("edit", "--device", "tpu", "--json")),
        ("edit: --out face.gif", c("edit", "--out", "face.gif")),
        ("edit: --size 99999", c("edit", "--size", "99999", "--out", "x.png")),
        ("edit: output under a file", c("edit", "--out", str(tmp / "afile" / "face.png"))),
        ("edit --size 2048: disk full (2 KiB file limit)", c("edit", "--size", "2048", "--out", "big.png",
                                                             pre=full_disk)),
        ("edit: header fields of wrong types", c("edit", "--axes", str(f["bad_header"]), "--json")),
        ("edit: header version 'abc'", c("edit", "--axes", str(f["bad_version"]), "--json")),
        ("info: truncated axis file", c("info", str(f["truncated_axes"]))),
        ("info: missing axis file", c("info", str(tmp / "missing.safetensors"))),
        ("info: header fields of wrong types", c("info", str(f["bad_header"]))),
        ("strip: unknown axis", c("strip", "--axis", "smile", "--out", "s.png")),
        ("build: --n 0", c("build", "--n", "0")),
        ("build: unknown generator", c("build", "--generator", "stylegan9", "--n", "10")),
        ("build: unknown extractor", c("build", "--extractor", "telepathy", "--n", "10")),
        ("build: output under a file", c("build", "--n", "200", "--extractor", "imagestats",
                                         "--out", str(tmp / "afile" / "a.safetensors"))),
        ("build --no-store-samples: disk full", c("build", "--n", "200", "--extractor", "imagestats",
                                                  "--batch-size", "50", "--no-store-samples",
                                                  "--out", "full.safetensors", pre=full_disk)),
        ("fit: missing sample folder", c("fit", str(tmp / "nowhere"))),
        ("import-axes: fake-pointer object array", c("import-axes", str(f["fake_pointer"]), "a.safetensors")),
        ("import-axes: ndarray memory bomb (109 B)", c("import-axes", str(f["bomb"]), "a.safetensors")),
        ("import-axes: pickle calling os.system", c("import-axes", str(f["evil"]), "a.safetensors")),
        ("convert pggan-tf1: fake pointer in variables", c("convert", "pggan-tf1", str(f["tf1_fake_pointer"]),
                                                           "g.safetensors")),
        ("convert pggan-tf1: (G_paper, D_paper, G_paper), NumPy 1.x [ok]",
         c("convert", "pggan-tf1", str(f["g_paper_named"]), "g.safetensors")),
        ("check-model pggan: fake pointer", c("check-model", f"pggan:{f['tf1_fake_pointer']}")),
        ("check-model celeba-cnn: HDF5 external storage", c("check-model", f"celeba-cnn:{f['external_h5']}",
                                                            "--kind", "extractor")),
        ("check-model torchscript: tlgan.json nested 100k deep", c("check-model", f"torchscript:{f['deep_torchscript']}",
                                                                   "--kind", "generator")),
        ("serve --assets: missing folder", c("serve", "--assets", str(tmp / "nowhere"), "--port", "0")),
        ("serve: --port 99999", c("serve", "--port", "99999")),
        ("SIGINT 0.5 s into start-up (imports)", lambda: signalled(["info"], tmp, signal.SIGINT,
                                                                     _after(0.5))),
        ("SIGTERM during build", lambda: signalled(["build", "--n", "20000", "--extractor", "imagestats",
                                                    "--shard-size", "256", "--out", "sig.safetensors"], tmp,
                                                   signal.SIGTERM, lambda: bool(list(samples.glob("shard-*"))))),
    ]


def _after(seconds: float) -> Callable[[], bool]:
    start = time.time()
    return lambda: time.time() - start >= seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        files = make_files(tmp)
        print("| case | exit | first line of stderr |")
        print("| --- | --- | --- |")
        for case, runner in cases(tmp, files):
            if args.only and args.only not in case:
                continue
            code, line = runner()
            print(f"| {case} | {code} | {line.replace('|', '/')[:160]} |", flush=True)
        assert not (tmp / "pwned").exists(), "a pickle ran code"
        left = [p.name for p in tmp.rglob(".*.tmp")]
        print(f"\ntemporary files left behind: {left or 'none'}; pid {os.getpid()}")


if __name__ == "__main__":
    main()
