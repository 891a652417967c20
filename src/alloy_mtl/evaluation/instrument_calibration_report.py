"""The instrument calibration's report: a table of fitted settings with intervals, and residual profiles."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from alloy_mtl.physics.instrument_calibration import InstrumentCalibration

__all__ = ["calibration_figure", "calibration_markdown"]


def _number(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def calibration_markdown(
    calibration: InstrumentCalibration,
    source: str,
    seconds: float,
    *,
    flat_fields: Mapping[str, Any] | None = None,
    fixed_pattern: Mapping[str, Any] | None = None,
    dark_frames: Mapping[str, Any] | None = None,
) -> str:
    """Markdown: what was fitted from which images, each setting's value, interval and verdict; the noise
    levels measured on the flat fields (their record, ``FlatFieldNoise.to_dict``) where there were some, and the
    residual gain pattern's level (``ResidualPattern.to_dict``)."""
    lines = [
        "# Instrument calibration",
        "",
        f"{calibration.n_images} calibration radiograph(s) from `{source}`, fitted in {seconds:.1f} s "
        f"({calibration.n_evaluations} likelihood evaluations).",
        "",
        "| setting | nominal | calibrated | 95 % interval | verdict |",
        "|---|---|---|---|---|",
    ]
    for s in (*calibration.settings, *calibration.channel_settings):
        if s.given:
            verdict, interval = "measured on the flat fields, held in the fit", ""
        elif not s.fitted:
            verdict, interval = "held at nominal", ""
        elif not s.identifiable:
            verdict, interval = "**not identifiable**: the data cannot tell (value is a point on a ridge)", ""
        else:
            verdict = "identified" + (" (at the edge of its search range: widen it)" if s.at_bound else "")
            interval = f"[{_number(s.low)}, {_number(s.high)}]"
        lines.append(f"| {s.key} | {_number(s.nominal)} | {_number(s.value)} | {interval} | {verdict} |")
    lines += ["", *_channel_kv_lines(calibration), "", *_pattern_lines(fixed_pattern)]
    lines += ["", *_flat_field_lines(flat_fields), "", *_dark_lines(dark_frames)]
    lines += [
        "",
        f"Log-likelihood: nominal {calibration.nominal_log_likelihood:.1f}, calibrated "
        f"{calibration.log_likelihood:.1f}. Root mean square standardised residual (1 = the noise): nominal "
        f"{calibration.rms_nominal:.2f}, calibrated {calibration.rms_calibrated:.2f}.",
        "",
        "The intervals are statistical: they assume the simulator's forward model is exact. On synthetic labs with "
        "hidden instruments they held the true value less often than 95 % (tube voltage and filtration 7 labs of "
        "8, CsI 4 of 8: `benchmarks/bench_lab_calibration.py`); read them as a lower bound on the uncertainty.",
        "",
        "Every later run simulates this instrument (`generation.instrument: auto`, the default); "
        "`--params generation.instrument=nominal` ignores it.",
        "",
    ]
    return "\n".join(lines)


def _dark_lines(dark_frames: Mapping[str, Any] | None) -> list[str]:
    if dark_frames is None:
        return ["No dark frames: the per-exposure dark offset stays as configured."]
    used = (
        "used by generation" if dark_frames["identifiable"] else "not pinned down: the configured value stays"
    )
    return [
        f"Dark frames ({dark_frames['n_frames']}, `{dark_frames.get('source', '?')}`): per-exposure offset "
        f"{_number(dark_frames['offset_sigma'])} of the open beam [{_number(dark_frames['low'])}, "
        f"{_number(dark_frames['high'])}]: {used}."
    ]


def _pattern_lines(pattern: Mapping[str, Any] | None) -> list[str]:
    if not pattern or not math.isfinite(pattern["gain_sigma"]):
        return ["Residual gain pattern: not read (fewer than 5 radiographs)."]
    verdict = (
        "used by generation (`fixed_pattern_gain_sigma`)"
        if pattern["identifiable"]
        else "not pinned down: the configured `fixed_pattern_gain_sigma` stays"
    )
    return [
        f"Residual gain pattern the flat-fielding left (read off the {pattern['n_images']} radiographs): relative sd "
        f"{_number(pattern['gain_sigma'])} [{_number(pattern['low'])}, {_number(pattern['high'])}]: {verdict}."
    ]


def _flat_field_lines(flat_fields: Mapping[str, Any] | None) -> list[str]:
    if flat_fields is None:
        return [
            "No flat fields: the detector's blur and dose come from the fit (or stay nominal), its "
            "exposure-to-exposure level terms stay as configured."
        ]
    lines = [
        f"## Flat fields ({flat_fields['n_frames']} frame(s), `{flat_fields.get('source', '?')}`)",
        "",
        f"Blur {flat_fields['blur_sigma_px']:.3f} px (neighbouring pixels' noise correlation "
        f"{flat_fields['noise_correlation']:.3f}); photons per pixel "
        + ", ".join(f"{d:,.0f}" for d in flat_fields["channel_dose"])
        + f" per channel (`dose_scale` {flat_fields['dose_scale']:.3f}); both held in the fit above.",
        "",
        "| level term | measured | 95 % interval (bootstrap over frames) | used for generation |",
        "|---|---|---|---|",
    ]
    for name, m in flat_fields["measured"].items():
        used = "yes" if m["identifiable"] else "no: too few frames or too wide; the configured value stays"
        lines.append(
            f"| {name} | {_number(m['value'])} | [{_number(m['low'])}, {_number(m['high'])}] | {used} |"
        )
    return lines


def _channel_kv_lines(calibration: InstrumentCalibration) -> list[str]:
    test = calibration.channel_kv_test
    if test is None:
        return ["One tube-voltage factor on every channel (`calibration.per_channel_kv: false`)."]
    verdict = (
        "each channel's tube voltage is fitted on its own (the `kv_<n>kv` rows; `kv_scale` is their geometric mean)"
        if calibration.channel_kv_scale is not None
        else "one tube-voltage factor on every channel"
    )
    return [
        f"Per-channel tube voltages: likelihood-ratio test of one factor on every channel against one per channel "
        f"{test['statistic']:.1f} on {test['dof']} degree(s) of freedom, p = {test['p_value']:.3g} "
        f"(level {test['alpha']:g}): {verdict}."
    ]


def calibration_figure(calibration: InstrumentCalibration, kv: Sequence[float]) -> Figure:
    """Mean standardised residual profile per channel across the image width, nominal vs calibrated."""
    figure = Figure(figsize=(9, 3.4), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    panels = (
        ("nominal instrument", calibration.residual_nominal, calibration.rms_nominal),
        ("calibrated instrument", calibration.residual_calibrated, calibration.rms_calibrated),
    )
    for ax, (title, residual, rms) in zip(axes, panels, strict=True):
        columns = np.arange(residual.shape[-1])
        for channel, volts in zip(residual, kv, strict=True):
            ax.plot(columns, channel, marker=".", label=f"{volts:g} kV")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{title} (rms {rms:.2f})")
        ax.set_xlabel("image column")
    axes[0].set_ylabel("mean residual / noise sd")
    axes[0].legend()
    return figure
