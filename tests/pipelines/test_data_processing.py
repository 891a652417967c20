"""The data_processing pipeline end to end, on a small generated dataset and on bad lab input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import open_store

SMALL_GENERATION = {"n_images": 240, "image_size": 16, "min_images_per_class": 18, "images_per_specimen": 3}


def test_generated_dataset_reaches_model_input_with_splits_and_data_docs(kedro_project, run_pipeline):
    run_pipeline(kedro_project, "data_processing", {"generation": SMALL_GENERATION})

    store = open_store(kedro_project / "data/05_model_input/xray")
    metadata = store.metadata
    assert isinstance(store.images, np.memmap)
    assert store.images.shape[1:] == (3, 16, 16)
    assert set(metadata["split"]) == {"train", "val", "test"}
    # every alloy in every split, and no specimen crosses splits
    counts = metadata.groupby(["alloy", "split"]).size().unstack(fill_value=0)
    assert set(counts.index) == set(ALLOYS)
    assert (counts[["val", "test"]] >= 2).all().all()
    assert (metadata.groupby("specimen_id")["split"].nunique() == 1).all()
    assert (kedro_project / "data/08_reporting/data_docs/index.html").stat().st_size > 0
    report = (kedro_project / "data/08_reporting/validation_report.json").read_text()
    assert '"success": true' in report


def _write_lab_folder(root: Path, thickness: list[float]) -> None:
    root.mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for i, t in enumerate(thickness):
        alloy = ALLOYS[i % len(ALLOYS)]
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / name)
        rows.append(
            {
                "image_id": f"lab-{i}",
                "specimen_id": f"S{i}",
                "alloy": alloy,
                "thickness_mm": t,
                "absorption": 2.0,
                "kv": "50",
                "source": "ingested",
                "path": name,
            }
        )
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)


def test_bad_lab_input_fails_before_model_input_is_written(kedro_project, run_pipeline):
    thickness = [1.0 + i for i in range(30)]
    thickness[7] = -2.0
    lab = kedro_project / "lab"
    _write_lab_folder(lab, thickness)

    with pytest.raises(Exception, match=r"metadata.csv: column 'thickness_mm' row 7 \(image_id=lab-7"):
        run_pipeline(
            kedro_project, "data_processing", {"data_source": {"kind": "csv_folder", "path": str(lab)}}
        )

    assert not (kedro_project / "data/05_model_input/xray").exists()
    assert not (kedro_project / "data/01_raw/xray_store").exists()


def test_unknown_source_kind_is_named(kedro_project, run_pipeline):
    with pytest.raises(Exception, match=r"data_source.kind: got 'ftp'"):
        run_pipeline(kedro_project, "data_processing", {"data_source": {"kind": "ftp"}})


def test_class_per_folder_lab_images_reach_model_input_with_missing_regression_labels(
    kedro_project, run_pipeline
):
    root = kedro_project / "lab_classes"
    rng = np.random.default_rng(1)
    for alloy in ALLOYS:
        folder = root / alloy
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 65535, (8, 8), dtype=np.uint16)
            Image.fromarray(pixels).save(folder / f"{alloy}_{i}.png")

    run_pipeline(
        kedro_project, "data_processing", {"data_source": {"kind": "class_per_folder", "path": str(root)}}
    )

    store = open_store(kedro_project / "data/05_model_input/xray")
    assert store.images.shape == (30, 1, 8, 8)
    assert float(store.images.max()) <= 1.0
    metadata = store.metadata
    assert set(metadata["source"]) == {"ingested"}
    assert metadata["thickness_mm"].isna().all()
    assert (metadata.groupby("alloy")["split"].nunique() == 3).all()


def _write_lab_class_folders(root: Path) -> None:
    """train|val|test/<designation as labs write it>/*.png, grey radiographs saved as 8-bit RGB."""
    names = {
        "1050": "Al1050",
        "2017": "AA2017",
        "5083": "EN AW-5083",
        "6082": "6082-T6",
        "7075": "AlZn5.5MgCu",
    }
    rng = np.random.default_rng(2)
    for split, n in {"train": 3, "val": 2, "test": 2}.items():
        for name in names.values():
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(n):
                grey = rng.integers(0, 255, (8, 8), dtype=np.uint8)
                Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / f"{split}{k}.png")


def test_lab_folders_as_labs_write_them_keep_their_own_split(kedro_project, run_pipeline):
    root = kedro_project / "lab"
    _write_lab_class_folders(root)

    run_pipeline(
        kedro_project, "data_processing", {"data_source": {"kind": "class_per_folder", "path": str(root)}}
    )

    store = open_store(kedro_project / "data/05_model_input/xray")
    metadata = store.metadata
    assert store.images.shape == (35, 1, 8, 8)
    assert (metadata["split"] == metadata["given_split"]).all()
    assert metadata["split"].value_counts().to_dict() == {"train": 15, "val": 10, "test": 10}
    summary = pd.read_csv(kedro_project / "data/08_reporting/split_summary.csv")
    assert set(summary["strategy"]) == {"given"}
    report = pd.read_csv(kedro_project / "data/08_reporting/ingest_report.csv")
    assert set(report["status"]) == {"ok"} and len(report) == 35


def test_every_bad_lab_file_in_one_error_with_the_report_written(kedro_project, run_pipeline):
    root = kedro_project / "lab"
    _write_lab_class_folders(root)
    (root / "train" / "Al1050" / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(root / "val" / "AA2017" / "rgba.png")
    source = {"kind": "class_per_folder", "path": str(root)}

    with pytest.raises(Exception, match=r"2 problem\(s\) ingesting") as err:
        run_pipeline(kedro_project, "data_processing", {"data_source": source})

    assert "empty.png: empty file (0 bytes)" in str(err.value)
    assert "rgba.png: RGBA image" in str(err.value)
    assert not (kedro_project / "data/01_raw/xray_store").exists()
    assert not (kedro_project / "data/05_model_input/xray").exists()
    report = pd.read_csv(kedro_project / "data/08_reporting/ingest_report.csv")
    assert report["status"].value_counts().to_dict() == {"ok": 35, "bad": 2}

    run_pipeline(
        kedro_project, "data_processing", {"data_source": {**source, "options": {"on_bad_file": "skip"}}}
    )

    assert open_store(kedro_project / "data/05_model_input/xray").images.shape[0] == 35
    report = pd.read_csv(kedro_project / "data/08_reporting/ingest_report.csv")
    assert report["status"].value_counts().to_dict() == {"ok": 35, "skipped": 2}


def test_a_labs_labelled_images_mix_into_the_simulation_all_in_train_and_a_bad_file_is_named(
    kedro_project, run_pipeline, tmp_path
):
    from alloy_mtl.data.synthetic_lab import write_synthetic_lab
    from alloy_mtl.physics.simulator import SimulationConfig

    lab = write_synthetic_lab(
        tmp_path / "lab",
        SimulationConfig(image_size=16),
        {"kv_scale": 1.03},
        n_calibration=1,
        test_per_alloy=3,
        labelled_per_alloy=6,
    )
    source = {"lab_images": {"path": str(lab.labelled), "share": 0.25}}
    run_pipeline(kedro_project, "data_processing", {"generation": SMALL_GENERATION, "data_source": source})
    metadata = open_store(kedro_project / "data/05_model_input/xray").metadata
    mixed = metadata[metadata["source"] == "ingested"]
    n_generated = int((metadata["source"] == "generated").sum())
    assert len(mixed) == 30 * round(0.25 * n_generated / 30) and (mixed["split"] == "train").all()
    assert set(mixed["alloy"]) == set(ALLOYS) and mixed["image_id"].str.startswith("lab-").all()

    first = pd.read_csv(lab.labelled / "metadata.csv")["path"][0].split(";")[0]
    (lab.labelled / first).write_bytes(b"not a png")
    with pytest.raises(Exception, match=rf"{lab.labelled}"):
        run_pipeline(
            kedro_project, "data_processing", {"generation": SMALL_GENERATION, "data_source": source}
        )
