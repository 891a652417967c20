"""Inference over a folder: one row per file, bad files carry their error, settings checked first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from alloy_mtl.mtl.loading.resize import resize_images
from alloy_mtl.tracking.inference import failed_rows, parse_inference_settings, predict_files
from alloy_mtl.tracking.listed_images import image_files


class FakeModel:
    """Predicts the mean pixel as thickness (so rows can be matched to files)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], dict]] = []

    def predict(self, data, params=None):
        self.calls.append((data.shape, params))
        return pd.DataFrame({"alloy": ["5083"] * len(data), "thickness_mm": data.mean(axis=(1, 2, 3))})


def _png(path, array):
    Image.fromarray(array).save(path)


def _plate(level: int, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """An image whose mean is ``level`` counts, one count up and down in alternate columns: a constant image is
    refused (it shows no plate)."""
    image = np.full(shape, level, dtype)
    image[:, ::2] += 1
    image[:, 1::2] -= 1
    return image


def test_bad_files_get_their_error_and_the_others_are_predicted(tmp_path):
    rgb = _plate(51, (8, 8, 3))  # 3 channels, I/I0 = 0.2
    _png(tmp_path / "a.png", rgb)
    _png(tmp_path / "b_gray.png", _plate(51, (8, 8)))  # 1 channel
    _png(tmp_path / "c_small.png", _plate(51, (4, 4, 3)))  # wrong size
    (tmp_path / "d_corrupt.png").write_bytes(b"not a png")
    _png(tmp_path / "e.png", _plate(102, (8, 8, 3)))
    _png(tmp_path / "f_blank.png", np.full((8, 8, 3), 255, np.uint8))  # an open-beam frame
    (tmp_path / "notes.txt").write_text("ignored")
    model = FakeModel()

    files = image_files(tmp_path)
    frame = predict_files(model, files, in_chans=3, image_size=8, root=tmp_path)

    assert list(frame.columns) == ["file", "alloy", "thickness_mm", "error"]
    assert list(frame["file"]) == [
        "a.png",
        "b_gray.png",
        "c_small.png",
        "d_corrupt.png",
        "e.png",
        "f_blank.png",
    ]
    np.testing.assert_allclose(frame.loc[[0, 4], "thickness_mm"], [0.2, 0.4], rtol=1e-6)
    assert "1 channel(s), the model expects 3" in frame.loc[1, "error"]
    assert "size 4x4, the model expects 8x8" in frame.loc[2, "error"]
    assert "unreadable or corrupt" in frame.loc[3, "error"]
    assert (
        "the image is constant (every pixel 1): a blank, dark or flat image shows no plate"
        in frame.loc[5, "error"]
    )
    assert list(failed_rows(frame)["file"]) == ["b_gray.png", "c_small.png", "d_corrupt.png", "f_blank.png"]
    assert model.calls == [((2, 3, 8, 8), {"bit_depth": "float"})]


def test_one_channel_models_read_grey_rgb_files_and_16_bit_files_scale_by_the_declared_depth(tmp_path):
    _png(tmp_path / "grey_as_rgb.png", _plate(51, (8, 8, 3)))  # a greyscale saved as RGB
    _png(tmp_path / "colour.png", np.dstack([np.full((8, 8), v, np.uint8) for v in (51, 60, 70)]))
    Image.fromarray(_plate(819, (8, 8), np.uint16)).save(tmp_path / "twelve_bit.png")  # 819 / 4095 = 0.2
    model = FakeModel()

    frame = predict_files(model, image_files(tmp_path), in_chans=1, image_size=8, root=tmp_path, bit_depth=12)

    by_file = frame.set_index("file")
    assert "3 channel(s), the model expects 1" in by_file.loc["colour.png", "error"]
    np.testing.assert_allclose(
        by_file.loc[["grey_as_rgb.png", "twelve_bit.png"], "thickness_mm"], 0.2, rtol=1e-4
    )


def test_settings_are_checked_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"inference.input: not set"):
        parse_inference_settings({"input": None}, "alloy_mtl")
    with pytest.raises(ValueError, match=r"inference.input: '.*missing' is not a folder"):
        parse_inference_settings({"input": str(tmp_path / "missing")}, "alloy_mtl")
    with pytest.raises(ValueError, match=r"inference.batch_size: got 0"):
        parse_inference_settings({"input": str(tmp_path), "batch_size": 0}, "alloy_mtl")
    with pytest.raises(ValueError, match=r"holds no .png/.tif/.tiff files"):
        image_files(tmp_path)
    with pytest.raises(ValueError, match=r"inference.bit_depth: got 24"):
        parse_inference_settings({"input": str(tmp_path), "bit_depth": 24}, "alloy_mtl")
    with pytest.raises(ValueError, match=r"inference.instrument: got 'nominal', expected null or a mapping"):
        parse_inference_settings({"input": str(tmp_path), "instrument": "nominal"}, "alloy_mtl")
    with pytest.raises(ValueError, match=r"kv_scale: got 'x', expected a finite number; dose: got nan"):
        parse_inference_settings(
            {"input": str(tmp_path), "instrument": {"kv_scale": "x", "dose": float("nan")}}, "alloy_mtl"
        )
    with pytest.raises(ValueError, match=r"inference.reject_rate: got 1.5, expected null .* in \[0, 1\)"):
        parse_inference_settings({"input": str(tmp_path), "reject_rate": 1.5}, "alloy_mtl")
    assert parse_inference_settings({"input": str(tmp_path), "reject_rate": 0.05}, "m").reject_rate == 0.05
    settings = parse_inference_settings({"input": str(tmp_path)}, "alloy_mtl")
    assert settings.reject_rate is None
    assert settings.model_uri == "models:/alloy_mtl@champion"
    assert settings.bit_depth is None
    assert settings.instrument is None


def test_the_instrument_reaches_the_model_as_params(tmp_path):
    _png(tmp_path / "a.png", _plate(51, (8, 8, 3)))
    model = FakeModel()
    predict_files(model, image_files(tmp_path), 3, 8, root=tmp_path, instrument={"kv_scale": 1.01})
    assert model.calls == [((1, 3, 8, 8), {"bit_depth": "float", "instrument_kv_scale": 1.01})]
    predict_files(model, image_files(tmp_path), 3, 8, root=tmp_path, reject_rate=0.05)
    assert model.calls[-1] == ((1, 3, 8, 8), {"bit_depth": "float", "reject_rate": 0.05})


def test_larger_square_files_are_downsampled_as_training_did_and_other_shapes_are_named(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (32, 1, 3))
    _png(tmp_path / "a_native.png", gradient)  # the 32 px radiograph a 8 px model was trained from
    _png(tmp_path / "b_wide.png", _plate(51, (8, 16, 3)))
    model = FakeModel()
    frame = predict_files(model, image_files(tmp_path), in_chans=3, image_size=8, root=tmp_path)
    assert model.calls == [((1, 3, 8, 8), {"bit_depth": "float"})]
    expected = resize_images(torch.from_numpy(gradient.transpose(2, 0, 1) / np.float32(255))[None], 8)
    assert frame.loc[0, "thickness_mm"] == pytest.approx(float(expected.mean()), rel=1e-5)
    assert frame.loc[0, "error"] == ""
    assert "size 8x16: not square" in frame.loc[1, "error"]


def _listed_folder(tmp_path):
    """Two images stored one 16-bit PNG per channel, listed in metadata.csv without labels, and rows that fail."""
    levels = {"w01": (13107, 19660, 26214), "w02": (32768, 39321, 45875)}  # I/I0 0.2..0.7 of 65535
    for image_id, channel_levels in levels.items():
        for kv, level in zip((40, 50, 80), channel_levels, strict=True):
            _png(tmp_path / f"{image_id}_{kv}kv.png", _plate(level, (8, 8), np.uint16))
    outside = tmp_path.parent / f"{tmp_path.name}_outside.png"
    _png(outside, _plate(13107, (8, 8), np.uint16))
    rows = [
        ("w01", "w01_40kv.png;w01_50kv.png;w01_80kv.png"),
        ("w02", "w02_40kv.png; w02_50kv.png ;w02_80kv.png"),
        ("w03", "w03_40kv.png;w03_50kv.png;w03_80kv.png"),  # not there
        ("w04", f"../{outside.name};w01_50kv.png;w01_80kv.png"),  # outside the folder
        ("w05", ""),
    ]
    pd.DataFrame(rows, columns=["image_id", "path"]).to_csv(tmp_path / "metadata.csv", index=False)
    return levels


def test_a_listed_folder_of_per_channel_files_is_predicted_without_labels(tmp_path):
    from alloy_mtl.tracking.inference import predict_prepared, prepare_folder
    from alloy_mtl.tracking.listed_images import has_listing, listed_images

    levels = _listed_folder(tmp_path)
    assert has_listing(tmp_path)
    listed = listed_images(tmp_path)
    folder = prepare_folder(listed, in_chans=3, image_size=8, root=tmp_path)
    frame = predict_prepared(FakeModel(), folder)

    assert list(frame.columns[:2]) == ["file", "image_id"] and frame.columns[-1] == "error"
    assert list(frame["image_id"]) == ["w01", "w02", "w03", "w04", "w05"]
    np.testing.assert_allclose(
        folder.images().mean(axis=(2, 3)), np.array(list(levels.values())) / 65535, atol=1e-4
    )  # the channels in the listed order
    errors = dict(zip(frame["image_id"], frame["error"], strict=True))
    assert errors["w01"] == errors["w02"] == ""
    assert "w03_40kv.png" in errors["w03"] and "not found" in errors["w03"]
    assert "a path leading outside the lab folder" in errors["w04"]
    assert "empty path" in errors["w05"]
    assert frame.loc[frame["image_id"] == "w02", "thickness_mm"].item() == pytest.approx(
        np.mean(levels["w02"]) / 65535, abs=1e-4
    )


def test_a_listing_without_a_path_column_is_refused_naming_the_file(tmp_path):
    from alloy_mtl.tracking.listed_images import listed_images

    pd.DataFrame({"image_id": ["a"], "file": ["a.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(
        ValueError, match=r"metadata.csv: no 'path' column .*columns are \['image_id', 'file'\]"
    ):
        listed_images(tmp_path)
    pd.DataFrame({"path": []}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="lists no image"):
        listed_images(tmp_path)


def test_a_multi_channel_file_among_per_channel_files_is_named(tmp_path):
    from alloy_mtl.tracking.listed_images import listed_images

    _png(tmp_path / "a_40kv.png", _plate(13107, (8, 8), np.uint16))
    _png(tmp_path / "a_rgb.png", np.dstack([_plate(51, (8, 8)), _plate(60, (8, 8)), _plate(70, (8, 8))]))
    pd.DataFrame({"path": ["a_40kv.png;a_rgb.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    [image] = listed_images(tmp_path)
    assert image.image_id == "a_40kv.png;a_rgb.png"  # no image_id column: the path cell
    with pytest.raises(ValueError, match="a_rgb.png: a per-channel file must hold one channel, found 3"):
        image.read(None, grey_rgb=False)
