"""Training an attribute CNN on a tiny CelebA-format folder with planted attributes; ingest; checkpoints."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from _celeba_files import ATTRIBUTES, LEFT, SIDE, TOP, make_celeba, planted_image
from PIL import Image
from safetensors.torch import load_file

from tlgan import TlganError, load_extractor
from tlgan.training import TrainConfig, ingest_celeba, read_celeba, train_extractor
from tlgan.training.data import crop_box

FAST = dict(arch="small", width=16, depth=3, input_size=32, batch_size=32, lr=3e-3)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    make_celeba(root, count=900)
    return root


@pytest.fixture(scope="module")
def medium_celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba120")
    make_celeba(root, count=120, splits=(80, 100))
    return root


@pytest.fixture()
def small_celeba(tmp_path):
    root = tmp_path / "small"
    make_celeba(root, count=12, splits=(6, 9))
    return root


def _quiet(_: str) -> None:
    pass


@pytest.mark.slow
def test_trains_to_90_percent(celeba, tmp_path):
    # (How long it takes is a benchmark figure, not a test: a loaded CI machine is several times slower.)
    out = tmp_path / "attributes.safetensors"
    result = train_extractor(celeba, out, TrainConfig(epochs=4, **FAST), device="cpu", progress=False, log=_quiet)
    assert result.finished
    for row in result.table.rows:
        assert row.test >= 0.9 and row.val >= 0.9, result.table.format()
    assert [r.name for r in result.table.rows] == list(ATTRIBUTES)
    assert "Red_Patch" in result.table.format() and "majority" in result.table.format()
    assert not (tmp_path / "attributes.safetensors.ckpt").exists()  # checkpoint removed once the file is written

    # The file is a tlgan extractor: fresh planted faces (their crops, as a generator would show them) are read right.
    extractor = load_extractor(f"tlgan-cnn:{out}", device="cpu")
    assert extractor.feature_names == list(ATTRIBUTES) and {f.kind for f in extractor.features} == {"probability"}
    assert extractor.identity.startswith("tlgan-cnn:")
    rng = np.random.default_rng(123)
    labels = np.where(rng.random((200, 4)) < 0.5, 1, -1)
    crops = np.stack([planted_image(rng, row)[TOP:TOP + SIDE, LEFT:LEFT + SIDE] for row in labels])
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1
    predicted = extractor(images).numpy() > 0.5
    accuracy = (predicted == (labels > 0)).mean(0)
    assert (accuracy >= 0.9).all(), accuracy
    assert extractor.training_record["accuracy"]["Stripes"]["test"] == result.table.rows[2].test


@pytest.mark.slow
def test_resumed_training_ends_with_the_same_weights(medium_celeba, tmp_path):
    celeba = medium_celeba
    config = TrainConfig(epochs=2, **{**FAST, "batch_size": 16})
    steps_per_epoch = int(np.ceil(80 / 16))
    whole = train_extractor(celeba, tmp_path / "whole.safetensors", config, device="cpu", progress=False, log=_quiet)
    assert whole.finished and whole.step == 2 * steps_per_epoch

    out = tmp_path / "pieces.safetensors"
    first = train_extractor(celeba, out, config, device="cpu", progress=False, max_steps=3, log=_quiet)
    assert not first.finished and first.step == 3 and not out.exists()
    assert (tmp_path / "pieces.safetensors.ckpt" / "state.json").is_file()
    second = train_extractor(celeba, out, config, device="cpu", progress=False, max_steps=4, log=_quiet)
    assert not second.finished and second.step == 7 > steps_per_epoch  # crossed into the second epoch
    with pytest.raises(TlganError, match="other settings .*lr"):
        train_extractor(celeba, out, TrainConfig(epochs=2, **{**FAST, "lr": 1e-3}), device="cpu", progress=False, log=_quiet)
    last = train_extractor(celeba, out, config, device="cpu", progress=False, log=_quiet)
    assert last.finished and last.step == whole.step

    a, b = load_file(str(tmp_path / "whole.safetensors")), load_file(str(out))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert [round(h["val_accuracy"], 6) for h in whole.history] == [round(h["val_accuracy"], 6) for h in last.history]


def test_restart_discards_a_checkpoint(medium_celeba, tmp_path):
    out = tmp_path / "r.safetensors"
    train_extractor(medium_celeba, out, TrainConfig(epochs=1, **FAST), device="cpu", progress=False, max_steps=3, log=_quiet)
    messages = []
    result = train_extractor(medium_celeba, out, TrainConfig(epochs=1, **{**FAST, "lr": 1e-3}), device="cpu",
                             progress=False, restart=True, max_steps=2, log=messages.append)
    assert result.step == 2 and not any("resuming" in m for m in messages)


def test_crop_box():
    assert crop_box(178, 218, already_cropped=False) == (25, 57, 153, 185)  # 128 at (89, 121)
    assert crop_box(300, 200, already_cropped=False) == (50, 0, 250, 200)
    assert crop_box(128, 128, already_cropped=True) == (0, 0, 128, 128)


def test_ingest_crops_like_the_original_and_resumes(small_celeba, tmp_path):
    out = tmp_path / "ingested"
    result = ingest_celeba(small_celeba, out, progress=False)
    assert (result.images, result.written, result.skipped) == (12, 12, 0)
    source = np.asarray(Image.open(small_celeba / "img_align_celeba" / "000003.jpg").convert("RGB"), dtype=float)
    crop = np.asarray(Image.open(out / "img_crop" / "000003.jpg"), dtype=float)
    assert crop.shape == (128, 128, 3)
    assert np.abs(crop - source[TOP:TOP + SIDE, LEFT:LEFT + SIDE]).mean() < 3  # same pixels up to JPEG re-encoding
    index = read_celeba(out)
    assert index.manifest["cropped"] and index.image_dir.name == "img_crop" and index.names == list(ATTRIBUTES)
    np.testing.assert_array_equal(index.labels, read_celeba(small_celeba).labels)
    again = ingest_celeba(small_celeba, out, progress=False)
    assert (again.written, again.skipped) == (0, 12)
    with pytest.raises(TlganError, match="already an ingested folder"):
        ingest_celeba(out, tmp_path / "twice", progress=False)
    # A training run on the ingested folder uses the crops as they are.
    result = train_extractor(out, tmp_path / "x.safetensors", TrainConfig(epochs=1, **FAST), device="cpu",
                             progress=False, log=_quiet)
    assert result.finished


def test_ingest_reports_unreadable_images(small_celeba, tmp_path):
    (small_celeba / "img_align_celeba" / "000005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TlganError, match="1 images could not be read, e.g. 000005.jpg"):
        ingest_celeba(small_celeba, tmp_path / "out", progress=False)
    assert len(list((tmp_path / "out" / "img_crop").iterdir())) == 11  # the good crops are kept


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "list_attr_celeba.txt").unlink(), "list_attr_celeba.txt not found"),
        (lambda r: (r / "list_eval_partition.txt").unlink(), "list_eval_partition.txt not found"),
        (lambda r: _edit(r / "list_attr_celeba.txt", "12\n", "13\n"), "announces 13 images but 12"),
        (lambda r: _edit(r / "list_attr_celeba.txt", "12\n", "twelve\n"), "line 1: expected the number"),
        (lambda r: _edit(r / "list_attr_celeba.txt", "000002.jpg ", "000002.jpg  0 "), "line 4: expected a file name and 4"),
        (lambda r: _edit(r / "list_attr_celeba.txt", "000002.jpg -1", "000002.jpg  0")
         if "000002.jpg -1" in (r / "list_attr_celeba.txt").read_text()
         else _edit(r / "list_attr_celeba.txt", "000002.jpg  1", "000002.jpg  0"), "line 4: values must be -1 or 1"),
        (lambda r: _edit(r / "list_eval_partition.txt", "000003.jpg 0\n", ""), "1 images have no partition"),
        (lambda r: _edit(r / "list_eval_partition.txt", "000003.jpg 0", "000003.jpg 7"), "line 3: expected 'file 0|1|2'"),
        (lambda r: (r / "list_eval_partition.txt").write_text(
            "".join(f"{i:06d}.jpg {0 if i < 10 else 1}\n" for i in range(1, 13))), "no image in the test split"),
        (lambda r: (r / "img_align_celeba" / "000004.jpg").unlink(), "1 of 12 images .* missing .* 000004.jpg"),
        (lambda r: shutil.rmtree(r / "img_align_celeba"), "no image folder"),
    ],
    ids=["no-attr", "no-partition", "count", "count-text", "fields", "value", "unpartitioned", "bad-split",
         "empty-split", "missing-image", "no-images"],
)
def test_malformed_celeba_folders(small_celeba, tmp_path, damage, message):
    damage(small_celeba)
    with pytest.raises(TlganError, match=message):
        train_extractor(small_celeba, tmp_path / "x.safetensors", TrainConfig(epochs=1, **FAST), device="cpu",
                        progress=False, log=_quiet)
    with pytest.raises(TlganError, match=message):
        ingest_celeba(small_celeba, tmp_path / "ingested", progress=False)


@pytest.mark.slow
def test_mobilenet_from_a_keras_backbone_file(small_celeba, tmp_path):
    from _keras_files import celeba_cnn_layers, write_keras_h5

    h5 = write_keras_h5(tmp_path / "mobilenet.h5", celeba_cnn_layers(alpha=0.25, seed=3))
    config = TrainConfig(arch="mobilenet", alpha=0.25, hidden=32, input_size=32, epochs=1, batch_size=4,
                         backbone=str(h5), freeze_backbone=True)
    out = tmp_path / "m.safetensors"
    assert train_extractor(small_celeba, out, config, device="cpu", progress=False, log=_quiet).finished
    tensors = load_file(str(out))
    keras = {wn.split(":")[0]: v for _, _, _, ws in celeba_cnn_layers(alpha=0.25, seed=3) for wn, v in ws}
    # Frozen: the first conv and a deep batch norm are exactly the Keras weights.
    torch.testing.assert_close(tensors["net.backbone.conv1.conv.weight"],
                               torch.from_numpy(keras["conv1/kernel"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(tensors["net.backbone.blocks.12.pw.bn.running_var"],
                               torch.from_numpy(keras["conv_pw_13_bn/moving_variance"]))
    extractor = load_extractor(f"tlgan-cnn:{out}", device="cpu")
    assert extractor(torch.zeros(2, 3, 64, 64)).shape == (2, 4)

    # A tlgan extractor file serves as a .safetensors backbone for the same architecture.
    again = TrainConfig(**{**config.__dict__, "backbone": str(out)})
    assert train_extractor(small_celeba, tmp_path / "m2.safetensors", again, device="cpu", progress=False,
                           log=_quiet).finished
    with pytest.raises(TlganError, match="needs --arch mobilenet"):
        train_extractor(small_celeba, tmp_path / "s.safetensors", TrainConfig(epochs=1, **{**FAST, "backbone": str(h5)}),
                        device="cpu", progress=False, log=_quiet)


def test_bad_settings(small_celeba, tmp_path):
    with pytest.raises(TlganError, match="must end in .safetensors"):
        train_extractor(small_celeba, tmp_path / "x.pt", TrainConfig(**FAST), device="cpu", progress=False, log=_quiet)
    with pytest.raises(TlganError, match="unknown architecture"):
        train_extractor(small_celeba, tmp_path / "x.safetensors", TrainConfig(arch="resnet"), device="cpu",
                        progress=False, log=_quiet)
    with pytest.raises(TlganError, match="needs --backbone"):
        train_extractor(small_celeba, tmp_path / "x.safetensors", TrainConfig(freeze_backbone=True), device="cpu",
                        progress=False, log=_quiet)
    with pytest.raises(TlganError, match="not found"):
        train_extractor(tmp_path / "nowhere", tmp_path / "x.safetensors", TrainConfig(**FAST), device="cpu",
                        progress=False, log=_quiet)
