"""Bring-your-own-data ingestion: both layouts, bit depths, channels, and every bad input with its message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.ingest import ingest_class_folders, ingest_csv_folder, ingest_dataset, read_image

H, W = 3, 4
PATTERN_8 = np.array([[0, 51, 102, 255]] * H, dtype=np.uint8)  # / 255 -> 0, 0.2, 0.4, 1
PATTERN_16 = np.array([[0, 13107, 26214, 65535]] * H, dtype=np.uint16)  # / 65535 -> 0, 0.2, 0.4, 1
EXPECTED = np.array([[0.0, 0.2, 0.4, 1.0]] * H, dtype=np.float32)


def write_png(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return path.name


def write_csv(root: Path, rows: list[dict[str, object]]) -> None:
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)


def csv_rows(paths: list[str], **overrides: object) -> list[dict[str, object]]:
    """One row per alloy (5 rows), image i at paths[i]."""
    rows = [
        {
            "image_id": f"im{i}",
            "specimen_id": f"sp{i}",
            "alloy": alloy,
            "thickness_mm": 1.5 * (i + 1),
            "absorption": 3.0,
            "kv": "60",
            "path": paths[i],
        }
        for i, alloy in enumerate(ALLOYS)
    ]
    for key, value in overrides.items():
        row, column = key.split("__")
        rows[int(row[1:])][column] = value
    return rows


def png_dataset(root: Path, bits: int = 8) -> Path:
    pattern = PATTERN_8 if bits == 8 else PATTERN_16
    paths = [write_png(root / f"im{i}.png", pattern) for i in range(len(ALLOYS))]
    write_csv(root, csv_rows(paths))
    return root


@pytest.mark.parametrize("bits", [8, 16])
def test_csv_folder_png_scaled_by_bit_depth(tmp_path: Path, bits: int) -> None:
    data = ingest_csv_folder(png_dataset(tmp_path, bits))
    assert data.images.shape == (5, 1, H, W)
    assert data.images.dtype == np.float32
    np.testing.assert_allclose(data.images[2, 0], EXPECTED, atol=1e-6)
    md = data.metadata
    assert md["alloy"].tolist() == list(ALLOYS)
    assert md["source"].eq("ingested").all()
    assert md["path"].iloc[1] == str(tmp_path / "im1.png")
    assert md["thickness_mm"].tolist() == [1.5, 3.0, 4.5, 6.0, 7.5]
    assert md["kv"].iloc[0] == "60"


def test_ingest_writes_nothing(tmp_path: Path) -> None:
    root = png_dataset(tmp_path)
    before = sorted(p.name for p in root.rglob("*"))
    ingest_dataset(root, layout="csv_folder")
    assert sorted(p.name for p in root.rglob("*")) == before


def test_csv_folder_tiff_multipage_and_float(tmp_path: Path) -> None:
    pages = np.stack([PATTERN_16, PATTERN_16 // 2, PATTERN_16 // 5])
    paths = []
    for i in range(5):
        if i == 4:
            tifffile.imwrite(tmp_path / "im4.tif", pages.astype(np.float32) / 65535, photometric="minisblack")
        else:
            tifffile.imwrite(tmp_path / f"im{i}.tiff", pages, photometric="minisblack")
        paths.append("im4.tif" if i == 4 else f"im{i}.tiff")
    write_csv(tmp_path, csv_rows(paths))
    data = ingest_csv_folder(tmp_path)
    assert data.images.shape == (5, 3, H, W)
    np.testing.assert_allclose(data.images[0, 0], EXPECTED, atol=1e-6)
    np.testing.assert_allclose(data.images[0, 2], (PATTERN_16 // 5) / 65535, atol=1e-6)
    np.testing.assert_allclose(data.images[4], data.images[0], atol=1e-6)


def test_rgb_tiff_samples_become_channels(tmp_path: Path) -> None:
    rgb = np.stack([PATTERN_8, PATTERN_8 // 3, PATTERN_8 // 5], axis=-1)  # H x W x 3
    tifffile.imwrite(tmp_path / "x.tif", rgb, photometric="rgb")
    image = read_image(tmp_path / "x.tif")
    assert image.shape == (3, H, W)
    np.testing.assert_allclose(image[1], (PATTERN_8 // 3) / 255, atol=1e-6)


def test_per_channel_files(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        write_png(tmp_path / f"im{i}_40kv.png", PATTERN_8)
        write_png(tmp_path / f"im{i}_80kv.png", PATTERN_16)
        paths.append(f"im{i}_80kv.png; im{i}_40kv.png")
    write_csv(tmp_path, csv_rows(paths))
    data = ingest_csv_folder(tmp_path)
    assert data.images.shape == (5, 2, H, W)
    np.testing.assert_allclose(data.images[:, 0], data.images[:, 1], atol=1e-6)
    np.testing.assert_allclose(data.images[3, 0], EXPECTED, atol=1e-6)
    assert data.metadata["path"].iloc[0] == f"{tmp_path / 'im0_80kv.png'};{tmp_path / 'im0_40kv.png'}"


def test_per_channel_file_must_be_single_channel(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "multi.tif", np.stack([PATTERN_8] * 2), photometric="minisblack")
    write_png(tmp_path / "one.png", PATTERN_8)
    write_csv(tmp_path, csv_rows(["one.png;multi.tif"] * 5))
    with pytest.raises(
        DataValidationError, match=r"multi\.tif: a per-channel file must hold one channel, found 2"
    ):
        ingest_csv_folder(tmp_path)


def make_class_folders(root: Path, splits: tuple[str, ...] | None) -> None:
    for split in splits or (None,):
        for alloy in ALLOYS:
            folder = root / split / alloy if split else root / alloy
            folder.mkdir(parents=True)
            write_png(folder / f"s{alloy}_a.png", PATTERN_8)
            write_png(folder / f"s{alloy}_b.png", PATTERN_16)
            (folder / "notes.txt").write_text("ignored")


def test_class_folders_with_splits(tmp_path: Path) -> None:
    make_class_folders(tmp_path, ("train", "val"))
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    data = ingest_dataset(tmp_path, layout="class_per_folder")
    md = data.metadata
    assert data.images.shape == (20, 1, H, W)
    assert md["given_split"].value_counts().to_dict() == {"train": 10, "val": 10}
    row = md.index[md["image_id"] == "val/2017/s2017_b"][0]
    assert md.loc[row, "alloy"] == "2017"
    assert md.loc[row, "specimen_id"] == "2017/s2017_b"
    assert md.loc[row, "path"] == str(tmp_path / "val" / "2017" / "s2017_b.png")
    assert md["thickness_mm"].isna().all() and md["absorption"].isna().all()
    np.testing.assert_allclose(data.images[row, 0], EXPECTED, atol=1e-6)


def test_class_folders_without_splits_and_pattern(tmp_path: Path) -> None:
    make_class_folders(tmp_path, None)
    data = ingest_class_folders(tmp_path, specimen_pattern=r"^s(\d+)_", kv="50")
    md = data.metadata
    assert "given_split" not in md.columns
    assert len(md) == 10
    assert md.loc[md["alloy"] == "5083", "specimen_id"].tolist() == ["5083/5083", "5083/5083"]
    assert md["kv"].eq("50").all()


def test_pattern_mismatch_names_file(tmp_path: Path) -> None:
    make_class_folders(tmp_path, None)
    with pytest.raises(DataValidationError, match=r"s1050_a\.png: specimen_pattern 'zzz' does not match"):
        ingest_class_folders(tmp_path, specimen_pattern="zzz")


def test_unknown_alloy_folder(tmp_path: Path) -> None:
    make_class_folders(tmp_path, ("train",))
    (tmp_path / "train" / "6061").mkdir()
    with pytest.raises(DataValidationError) as err:
        ingest_class_folders(tmp_path)
    assert "train/6061: designation '6061' is alloy 6061, not one of the five alloys" in str(err.value)
    assert "['1050', '2017', '5083', '6082', '7075']" in str(err.value)


def test_stray_folder_beside_splits(tmp_path: Path) -> None:
    make_class_folders(tmp_path, ("train",))
    (tmp_path / "1050").mkdir()
    with pytest.raises(DataValidationError, match=r"1050: folder '1050' is neither a split folder"):
        ingest_class_folders(tmp_path)


def test_unknown_layout() -> None:
    with pytest.raises(ValueError, match="unknown layout 'zip'.*csv_folder"):
        ingest_dataset(".", layout="zip")


# ---- bad inputs: every message names the culprit ----


def test_corrupt_image(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    (tmp_path / "im3.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DataValidationError, match=r"im3\.png: unreadable or corrupt image file"):
        ingest_csv_folder(tmp_path)


def test_corrupt_tiff(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage!")
    with pytest.raises(DataValidationError, match=r"bad\.tif: unreadable or corrupt"):
        read_image(tmp_path / "bad.tif")


def test_missing_image_file(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    (tmp_path / "im1.png").unlink()
    with pytest.raises(DataValidationError, match=r"im1\.png: image file not found"):
        ingest_csv_folder(tmp_path)


def test_wrong_shape(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    write_png(tmp_path / "im2.png", np.zeros((H + 1, W), dtype=np.uint8))
    with pytest.raises(DataValidationError) as err:
        ingest_csv_folder(tmp_path)
    message = str(err.value)
    assert "im2.png: image shape (1, 4, 4)" in message
    assert "expected shape (1, 3, 4)" in message
    assert "im0.png" in message


def test_nan_pixels_in_float_tiff(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    bad = EXPECTED.copy()
    bad[1, 2] = np.nan
    bad[0, 0] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    rows = csv_rows([f"im{i}.png" for i in range(5)], r4__path="nan.tif")
    write_csv(tmp_path, rows)
    with pytest.raises(DataValidationError, match=r"nan\.tif: 2 NaN/inf pixel\(s\)"):
        ingest_csv_folder(tmp_path)


def test_unknown_alloy_in_csv(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    write_csv(tmp_path, csv_rows([f"im{i}.png" for i in range(5)], r2__alloy="6061"))
    with pytest.raises(DataValidationError) as err:
        ingest_csv_folder(tmp_path, required_alloys=None)
    message = str(err.value)
    assert "metadata.csv row 2 (image_id=im2): column 'alloy': designation '6061' is alloy 6061" in message
    assert "['1050', '2017', '5083', '6082', '7075']" in message


def test_negative_thickness_in_csv(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    write_csv(tmp_path, csv_rows([f"im{i}.png" for i in range(5)], r3__thickness_mm=-2.0))
    with pytest.raises(
        DataValidationError, match=r"column 'thickness_mm' row 3 \(image_id=im3.*greater_than\(0\)"
    ):
        ingest_csv_folder(tmp_path)


def test_duplicate_image_id_in_csv(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    write_csv(tmp_path, csv_rows([f"im{i}.png" for i in range(5)], r4__image_id="im0"))
    with pytest.raises(DataValidationError, match=r"column 'image_id' row 0 .* row 4 .*field_uniqueness"):
        ingest_csv_folder(tmp_path)


def test_missing_column_in_csv(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    pd.read_csv(tmp_path / "metadata.csv").drop(columns="specimen_id").to_csv(tmp_path / "metadata.csv")
    with pytest.raises(
        DataValidationError, match=r"metadata\.csv: missing required column\(s\) \['specimen_id'\]"
    ):
        ingest_csv_folder(tmp_path)


def test_empty_class_in_csv(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    write_csv(tmp_path, csv_rows([f"im{i}.png" for i in range(5)], r1__alloy="1050"))
    with pytest.raises(DataValidationError, match=r"metadata\.csv: alloy '2017' has no images"):
        ingest_csv_folder(tmp_path)


def test_optional_columns_default(tmp_path: Path) -> None:
    png_dataset(tmp_path)
    pd.read_csv(tmp_path / "metadata.csv").drop(columns=["thickness_mm", "kv"]).to_csv(
        tmp_path / "metadata.csv", index=False
    )
    md = ingest_csv_folder(tmp_path).metadata
    assert md["thickness_mm"].isna().all()
    assert md["kv"].eq("").all()
