"""Lab folders as labs write them: designations as folder names, grey-as-RGB images, every problem in one
report and one error, ``on_bad_file: skip``, the CSV's own split, and 12-bit data in 16-bit files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.ingest import ingest_class_folders, ingest_csv_folder, read_image, scan_dataset
from alloy_mtl.data.ingest_report import MAX_LISTED_PROBLEMS, REPORT_COLUMNS

H, W = 6, 5
FOLDERS = {
    "1050": "Al1050",
    "2017": "AA2017A",
    "5083": "EN AW-5083-H111",
    "6082": "6082-T6",
    "7075": "AlZn5,5MgCu",
}


def grey_rgb(value: int) -> np.ndarray:
    """A grey radiograph saved as 8-bit RGB: three identical channels."""
    grey = np.full((H, W), value, dtype=np.uint8)
    grey[0, 0] = 255
    return np.stack([grey] * 3, axis=-1)


def lab_folder(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """``root/{train,val,test}/<designation>/s<k>.png``, grey saved as RGB, a notes file in each folder."""
    per_split = per_split or {"train": 3, "val": 2, "test": 2}
    for split, n in per_split.items():
        for alloy, name in FOLDERS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                Image.fromarray(grey_rgb(10 * k)).save(folder / f"{split}_s{k}.png")
            (folder / "notes.txt").write_text(f"{alloy} radiographs")
    return root


def test_lab_layout_with_designation_folders_and_grey_rgb_is_ingested_as_is(tmp_path: Path) -> None:
    ingested = scan_dataset(lab_folder(tmp_path), "class_per_folder")
    data, report = ingested.data, ingested.report
    md = data.metadata
    assert data.images.shape == (35, 1, H, W)  # grey RGB -> one channel
    assert sorted(md["alloy"].unique()) == list(ALLOYS)
    assert md["given_split"].value_counts().to_dict() == {"train": 15, "val": 10, "test": 10}
    row = md.index[md["image_id"] == "val/EN AW-5083-H111/val_s1"][0]
    assert md.loc[row, ["alloy", "alloy_designation", "alloy_variant", "temper"]].tolist() == [
        "5083",
        "EN AW-5083-H111",
        "",
        "H111",
    ]
    assert md.loc[md["alloy"] == "2017", "alloy_variant"].eq("A").all()
    assert md.loc[row, "specimen_id"] == "EN AW-5083-H111/val_s1"
    np.testing.assert_allclose(data.images[row, 0, 0, :2], [1.0, 10 / 255], atol=1e-6)
    assert list(report.columns) == list(REPORT_COLUMNS)
    assert report["status"].value_counts().to_dict() == {"ok": 35, "ignored": 15}
    assert report.loc[report["status"] == "ignored", "problem"].eq("not a .png/.tif/.tiff image").all()


def test_rgb_with_distinct_channels_keeps_them(tmp_path: Path) -> None:
    rgb = grey_rgb(40)
    rgb[..., 1] //= 2
    Image.fromarray(rgb).save(tmp_path / "energies.png")
    tifffile.imwrite(tmp_path / "grey.tif", grey_rgb(40), photometric="rgb")
    assert read_image(tmp_path / "energies.png", grey_rgb=True).shape == (3, H, W)
    assert read_image(tmp_path / "grey.tif", grey_rgb=True).shape == (1, H, W)
    assert read_image(tmp_path / "grey.tif").shape == (3, H, W)  # the default keeps RGB as read (inference)


def write_every_bad_kind(root: Path) -> dict[str, str]:
    """Five good alloy folders plus one file or folder of each bad kind; returns name -> expected cause."""
    lab_folder(root, {"train": 2})
    train = root / "train"
    whole = (train / "Al1050" / "train_s0.png").read_bytes()
    (train / "Al1050" / "truncated.png").write_bytes(whole[: len(whole) // 2 + 8])  # cut inside the pixels
    (train / "AA2017A" / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((H, W, 4), dtype=np.uint8)).save(train / "6082-T6" / "rgba.png")
    Image.fromarray(np.zeros((H + 2, W), dtype=np.uint8)).save(train / "AlZn5,5MgCu" / "big.png")
    nan = np.zeros((H, W), dtype=np.float32)
    nan[1, 1] = np.nan
    tifffile.imwrite(train / "Al1050" / "nan.tif", nan)
    (train / "6061").mkdir()
    Image.fromarray(grey_rgb(0)).save(train / "6061" / "other.png")
    (train / "Al-1050 batch2").mkdir()
    Image.fromarray(grey_rgb(0)).save(train / "Al-1050 batch2" / "x.png")
    return {
        "truncated.png": "unreadable or corrupt image file",
        "empty.png": "empty file (0 bytes)",
        "rgba.png": "RGBA image (with an alpha channel); expected a greyscale radiograph",
        "big.png": "image shape (1, 8, 5) (C, H, W) differs from the expected shape (1, 6, 5)",
        "nan.tif": "1 NaN/inf pixel(s)",
        "6061": "designation '6061' is alloy 6061, not one of the five alloys",
        "Al-1050 batch2": "unknown alloy designation 'Al-1050 batch2'",
    }


def test_every_bad_kind_is_reported_in_one_error_and_one_report(tmp_path: Path) -> None:
    expected = write_every_bad_kind(tmp_path)
    with pytest.raises(DataValidationError) as err:
        ingest_class_folders(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{len(expected)} problem(s) ingesting {tmp_path}")
    lines = message.splitlines()[1:]
    for name, cause in expected.items():
        assert any(f"/{name}: {cause}" in line for line in lines), (name, message)

    report = scan_dataset(tmp_path, "class_per_folder").report
    bad = report[report["status"] == "bad"]
    assert sorted(Path(p).name for p in bad["path"]) == sorted(
        ["truncated.png", "empty.png", "rgba.png", "big.png", "nan.tif", "other.png", "x.png"]
    )
    assert (report["status"] == "ok").sum() == 10
    assert report.loc[report["path"].str.endswith("other.png"), "location"].iloc[0] == str(
        tmp_path / "train/6061"
    )


def test_skip_drops_bad_files_reports_and_logs_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = write_every_bad_kind(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = ingest_class_folders(tmp_path, on_bad_file="skip")
    assert data.images.shape == (10, 1, H, W)
    assert sorted(data.metadata["alloy"].unique()) == list(ALLOYS)
    report = scan_dataset(tmp_path, "class_per_folder", on_bad_file="skip").report
    assert report["status"].value_counts().to_dict() == {"ok": 10, "skipped": 7, "ignored": 5}
    warning = next(r.getMessage() for r in caplog.records if "Skipped 7 bad file(s)" in r.getMessage())
    for name in expected:
        assert f"/{name}: " in warning


def test_skip_cannot_leave_an_alloy_without_images(tmp_path: Path) -> None:
    lab_folder(tmp_path, {"train": 1})
    (tmp_path / "train" / "AA2017A" / "train_s0.png").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"alloy '2017' has no images"):
        ingest_class_folders(tmp_path, on_bad_file="skip")


def test_long_problem_lists_are_capped_with_a_count(tmp_path: Path) -> None:
    lab_folder(tmp_path, {"train": 1})
    for k in range(MAX_LISTED_PROBLEMS + 10):
        (tmp_path / "train" / "Al1050" / f"empty{k:03d}.png").write_bytes(b"")
    with pytest.raises(DataValidationError) as err:
        ingest_class_folders(tmp_path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{MAX_LISTED_PROBLEMS + 10} problem(s)")
    assert len(lines) == 1 + MAX_LISTED_PROBLEMS + 1
    assert lines[-1] == "  ... and 10 more"


def test_alloy_names_map_any_folder(tmp_path: Path) -> None:
    lab_folder(tmp_path, {"train": 1})
    (tmp_path / "train" / "Al1050").rename(tmp_path / "train" / "pure aluminium")
    data = ingest_class_folders(tmp_path, alloy_names={"pure aluminium": "1050-O"})
    md = data.metadata.set_index("alloy_designation")
    assert md.loc["pure aluminium", ["alloy", "temper"]].tolist() == ["1050", "O"]


def test_split_folder_aliases(tmp_path: Path) -> None:
    lab_folder(tmp_path, {"Training": 1, "valid": 1})
    md = ingest_class_folders(tmp_path).metadata
    assert md["given_split"].value_counts().to_dict() == {"train": 5, "val": 5}


def write_csv_lab(root: Path, alloys: list[str], splits: list[str] | None = None) -> None:
    rows = []
    for i, alloy in enumerate(alloys):
        Image.fromarray(grey_rgb(i)).save(root / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "specimen_id": f"sp{i}", "alloy": alloy, "path": f"im{i}.png"})
        if splits:
            rows[-1]["split"] = splits[i]
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)


def test_csv_alloy_column_uses_the_same_parser_and_split_column_is_kept(tmp_path: Path) -> None:
    write_csv_lab(
        tmp_path,
        ["Al1050", "EN AW-2017A", "AlMg4,5Mn0,7", "6082-T651", "7075"],
        ["Train", "train", "validation", "test", None],
    )
    md = ingest_csv_folder(tmp_path).metadata
    assert md["alloy"].tolist() == list(ALLOYS)
    assert md["temper"].tolist() == ["", "", "", "T651", ""]
    assert md["given_split"].tolist()[:4] == ["train", "train", "val", "test"]
    assert pd.isna(md["given_split"].iloc[4])
    assert "split" not in md.columns


def test_csv_problems_name_the_row_all_at_once(tmp_path: Path) -> None:
    write_csv_lab(
        tmp_path, ["Al1050", "2017", "AlMg3", "6082", "7075"], ["train", "val", "test", "dev", "test"]
    )
    (tmp_path / "im4.png").write_bytes(b"")
    with pytest.raises(DataValidationError) as err:
        ingest_csv_folder(tmp_path, required_alloys=None)
    message = str(err.value)
    assert "metadata.csv row 2 (image_id=im2): column 'alloy': unknown alloy designation 'AlMg3'" in message
    assert "metadata.csv row 4 (image_id=im4): " in message and "im4.png: empty file (0 bytes)" in message
    assert (
        "column 'split' row 3 (image_id=im3, value='dev'): expected one of ['train', 'val', 'test']"
        in message
    )


def test_unreferenced_images_are_reported_as_ignored(tmp_path: Path) -> None:
    write_csv_lab(tmp_path, list(ALLOYS))
    Image.fromarray(grey_rgb(0)).save(tmp_path / "stray.png")
    report = scan_dataset(tmp_path, "csv_folder").report
    stray = report[report["path"] == str(tmp_path / "stray.png")]
    assert stray[["status", "problem"]].values.tolist() == [["ignored", "not listed in metadata.csv"]]


def twelve_bit_tiffs(root: Path, top: int = 4095) -> None:
    pixels = np.array([[0, 1365, 2730, top]] * 2, dtype=np.uint16)
    paths = []
    for i in range(len(ALLOYS)):
        tifffile.imwrite(root / f"im{i}.tif", pixels)
        paths.append(f"im{i}.tif")
    pd.DataFrame({"image_id": paths, "specimen_id": paths, "alloy": list(ALLOYS), "path": paths}).to_csv(
        root / "metadata.csv", index=False
    )


def test_declared_bit_depth_scales_by_the_true_range(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    twelve_bit_tiffs(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = ingest_csv_folder(tmp_path, bit_depth=12)
    np.testing.assert_allclose(data.images[0, 0, 0], [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    assert not [r for r in caplog.records if "bit_depth" in r.getMessage()]


def test_undeclared_low_range_16_bit_data_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    twelve_bit_tiffs(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = ingest_csv_folder(tmp_path)
    assert float(data.images.max()) == pytest.approx(4095 / 65535)
    assert any(
        "reach at most 4095 of 65535" in r.getMessage() and "bit_depth: 12" in r.getMessage()
        for r in caplog.records
    )


def test_pixels_above_the_declared_bit_depth_are_bad(tmp_path: Path) -> None:
    twelve_bit_tiffs(tmp_path, top=5000)
    with pytest.raises(DataValidationError, match=r"pixel value 5000 exceeds the declared bit_depth 12"):
        ingest_csv_folder(tmp_path, bit_depth=12)


def test_paths_and_symlinks_leading_outside_the_lab_folder_are_refused_by_name(tmp_path: Path) -> None:
    lab, elsewhere = tmp_path / "lab", tmp_path / "elsewhere"
    lab.mkdir()
    elsewhere.mkdir()
    write_csv_lab(lab, list(ALLOYS))
    Image.fromarray(grey_rgb(7)).save(elsewhere / "secret.png")
    (lab / "im1.png").unlink()
    (lab / "im1.png").symlink_to(elsewhere / "secret.png")
    metadata = pd.read_csv(lab / "metadata.csv")
    metadata.loc[3, "path"] = "../elsewhere/secret.png"
    metadata.to_csv(lab / "metadata.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        ingest_csv_folder(lab, required_alloys=None)
    message = str(err.value)
    assert message.startswith(f"2 problem(s) ingesting {lab}")
    assert f"row 1 (image_id=im1): {lab}/im1.png: a symlink leading outside the lab folder {lab}" in message
    assert (
        f"row 3 (image_id=im3): {lab}/../elsewhere/secret.png: a path leading outside the lab folder"
        in message
    )
    assert f"(to {elsewhere / 'secret.png'}); copy the image into it" in message

    class_lab = tmp_path / "classes"
    lab_folder(class_lab, {"train": 1, "val": 1, "test": 1})
    (class_lab / "train" / "Al1050" / "linked.png").symlink_to(elsewhere / "secret.png")
    report = scan_dataset(class_lab, "class_per_folder").report
    linked = report[report["path"].str.endswith("linked.png")]
    assert linked["status"].tolist() == ["bad"]
    assert "a symlink leading outside the lab folder" in linked["problem"].iloc[0]


def test_an_image_too_large_is_refused_from_its_header_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alloy_mtl.data import images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 20 * 20 * 3 - 1)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((3, 20, 20), np.uint16))

    def decoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded before the size was checked")

    monkeypatch.setattr(Image.Image, "load", decoded)
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", decoded)
    for name in ("big.png", "big.tif"):
        with pytest.raises(
            DataValidationError, match=r"header claims 1,200 pixel values, more than the 1,199"
        ):
            read_image(tmp_path / name)


def test_a_decompression_bomb_is_refused_with_the_project_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above twice its limit, at open
    with pytest.raises(
        DataValidationError,
        match=r"bomb.png: its header claims more pixels than Pillow decodes, more than the 67,108,864 an image may hold \(refused before",
    ):
        read_image(tmp_path / "bomb.png")
