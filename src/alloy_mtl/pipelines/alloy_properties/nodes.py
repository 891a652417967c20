"""Nodes of the alloy_properties pipeline: each parses its parameters and calls ``alloy_mtl.properties``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.properties.elements import ELEMENTS
from alloy_mtl.properties.features import composition_features
from alloy_mtl.properties.generator import ID_COLUMN, TARGETS, generate_alloys
from alloy_mtl.properties.params import parse_study_params
from alloy_mtl.properties.report import figures, transfer_findings, verdict_markdown
from alloy_mtl.properties.schema import validate_alloys
from alloy_mtl.properties.split import SPLIT_COLUMN, split_alloys
from alloy_mtl.properties.stats import PRIMARY, summarise
from alloy_mtl.properties.study import run_study

logger = logging.getLogger(__name__)

GENERATED = "generated data"
CAVEATS = """## Why results can differ from the paper

- Generated data: each property is a smooth function of the composition (see alloy_mtl.properties.laws),
  so the composition descriptors explain most of the variance; the paper's measured data are noisier.
- Disjoint label sets: every task's gradient comes from different alloys, so on the shared parameters the
  task gradients are close to orthogonal (about 90 degrees), not the paper's 66-75 degrees.
- Each task's loss is a masked mean over its own labels, so plain MTL weighs the 200-label hardness task
  as much as the 13,100-label resistivity task; the 65:1 imbalance acts through noisy small-task batches.
- Small test sets at the default size (about 30 hardness and 30 amorphous alloys): the sd over seeds is
  large; `--env paper` (54k alloys) gives four times more."""


def acquire_alloys(params: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The raw table (kept in memory: nothing is written before it is validated) and where it came from."""
    data = parse_study_params(params).data
    if data.source == "csv":
        path = Path(str(data.path))
        if not path.is_file():
            raise FileNotFoundError(f"alloy_properties.data.path: no CSV file at {path.resolve()}")
        return pd.read_csv(path, dtype=str, keep_default_na=True), str(path)
    frame = generate_alloys(
        data.n_resistivity, data.n_hardness, data.n_amorphous, data.overlap, data.noise.levels(), data.seed
    )
    return frame, GENERATED


def validate(raw: pd.DataFrame, where: str, params: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate (pandera, every problem listed) and normalise to atomic percent; a report of label counts."""
    data = parse_study_params(params).data
    unit = data.unit if where != GENERATED else "at%"
    alloys = validate_alloys(raw, where, unit, data.total_tolerance)
    report = {
        "source": where,
        "unit": unit,
        "rows": len(alloys),
        "labels": {t: int(alloys[t].notna().sum()) for t in TARGETS},
        "rows_with_several_labels": int((alloys[list(TARGETS)].notna().sum(axis=1) > 1).sum()),
        "amorphous_share": float(alloys["amorphous"].mean()) if alloys["amorphous"].notna().any() else None,
    }
    return alloys, report


def featurize_and_split(alloys: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Composition descriptors, the targets and a train/val/test split per label set."""
    split = parse_study_params(params).split
    features = composition_features(alloys[list(ELEMENTS)])
    table = pd.concat([alloys[[ID_COLUMN, *TARGETS]], features], axis=1)
    table = split_alloys(table, split.fractions, split.seed)
    return table[[ID_COLUMN, SPLIT_COLUMN, *TARGETS, *features.columns]]


def run(model_input: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every configuration x seed: test metrics, per-epoch histories, learned relation weights."""
    result = run_study(model_input, parse_study_params(params).study)
    return result.runs, result.histories, result.relations


def report(  # noqa: PLR0917 (the study's outputs and the validation report)
    runs: pd.DataFrame,
    histories: pd.DataFrame,
    relations: pd.DataFrame,
    validation_report: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, str, dict[str, Figure], dict[str, Any]]:
    """The study's table, the generated verdict, the figures and a JSON summary of the findings."""
    study = parse_study_params(params).study
    kinds = {t.name: t.kind for t in study.task_specs()}
    primary = {name: PRIMARY[kind] for name, kind in kinds.items()}
    summary = summarise(runs, study.baseline, primary)
    order = list(study.configurations)
    multi = [n for n in order if study.configurations[n].kind != "single_task"]
    reference = next((n for n in multi if study.configurations[n].kind == "hard_sharing"
                      and study.configurations[n].gradient_method.name == "equal"
                      and not study.configurations[n].lds), multi[0] if multi else study.baseline)  # fmt: skip
    mitigations = [n for n in multi if n != reference]
    findings = transfer_findings(
        summary, primary, study.baseline, reference, mitigations, study.alpha, study.recovery_share
    )
    labels = validation_report["labels"]
    context = {
        "order": order,
        "baseline": study.baseline,
        "reference": reference,
        "primary": primary,
        "alpha": study.alpha,
        "recovery_share": study.recovery_share,
        "n_seeds": study.seeds,
        "relation_init": study.model.relation_init,
        "caveats": CAVEATS,
        "data_description": (
            f"{validation_report['source']} ({validation_report['rows']} alloys; labels: "
            + ", ".join(f"{t} {n}" for t, n in labels.items())
            + f"; {validation_report['rows_with_several_labels']} rows with more than one label)"
        ),
    }
    verdict = verdict_markdown(summary, histories, relations, findings, context)
    logger.info("alloy_properties verdict:\n%s", verdict)
    return (
        summary,
        verdict,
        figures(runs, histories, relations, order),
        {"reference": reference, "baseline": study.baseline, "findings": _jsonable(findings)},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value
