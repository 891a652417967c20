"""Physics-limit estimator: maximum-likelihood alloy and thickness from a wedge radiograph.

The estimator knows the simulator's forward model (``simulator``) as a careful experimenter would: the tube
spectra and detector, the nominal wedge geometry (slope, field of view), the scatter and blur model, the noise
levels, and each alloy's designation (its nominal composition and how production spreads it). It does not
know a specimen's actual composition, its wedge's machining error, nor an exposure's drift, gain or offset.

Per image, rows are averaged (dead pixels, which read 0, excluded) to one -ln(I/I0) profile per channel c.
For every alloy a the profile is fitted with

    m_c(x) = -ln( B[T + S(T)](x) + o_c ) + d_c,
    -ln T = F_a,c(t) + sum_k z_k G_a,c,k(t),     t(x) = t0 + lambda * s * x,

where F_a,c is -ln of the detector-weighted polychromatic transmission of the alloy's mean composition,
G_a,c,k its first-order change along the k-th principal direction of the alloy's attenuation spectrum mu(E)
under the production composition spread (z_k ~ N(0, 1); mu(E) is linear in the weight fractions, so two
directions capture it), S the scatter kernel, B the detector blur, s the nominal wedge slope, x the column
position (mm), t0 the centre thickness, lambda the wedge-slope error (prior sd ``wedge_slope_sigma``), d_c a
log-intensity offset (drift and gain) and o_c a dark offset (priors from the config). The weighted
least-squares fit is a Gauss-Newton iteration with column variances from the photon, fixed-pattern and
offset noise model, vectorised over images and alloys. The class log-likelihood is the Laplace
approximation of the marginal likelihood over all fitted parameters; the posterior is its softmax with a
uniform (or given) prior.

Tolerance mode (``tolerances`` given; details in ``instrument_fit``). The alloys differ by a few percent in
attenuation, so a 2 % kV error or 0.3 mm more Al filter drops the nominal-told macro AP from 0.99 to 0.81 /
0.69. Told ranges, the estimator treats the instrument as unknown. Mode ``joint`` (default): the images of one
``predict`` call share one instrument, fitted across the batch by the class-marginal likelihood (labels
unused), then every image is fitted under it (``fitted_instrument``). Mode ``marginal``: each image's
likelihood averaged over a grid of instruments, a far weaker baseline (each alloy takes its best beam).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.alloys import sample_composition, specimen_density
from alloy_mtl.physics.attenuation import composition_matrix, mass_attenuation_table
from alloy_mtl.physics.instrument_fit import (
    fit_instrument,
    instrument_config,
    instrument_grid,
    nominal_instrument,
    parse_tolerances,
    start_instrument,
)
from alloy_mtl.physics.simulator import SimulationConfig, blur_kernel, channel_weights, gaussian_matrix

__all__ = ["MODES", "PhysicsLimitEstimator"]

logger = logging.getLogger(__name__)

_GRID_STEP_MM = 0.01
_N_ITERATIONS = 6
_N_COMPONENTS = 2
_N_PRIOR_SAMPLES = 400
_PRIOR_SEED = 20240601
_CHUNK = 500
_N_FIT_IMAGES = 128
_MARGINAL_LEVELS = 3
MODES = ("joint", "marginal")


class PhysicsLimitEstimator:
    """Maximum-likelihood alloy / thickness / absorption from radiographs simulated with ``config``.

    Args:
        config: the simulation configuration the images come from (kv, geometry, nuisance levels); with
            ``tolerances``, the nominal instrument.
        prior: optional class prior alloy -> probability (default uniform over ``ALLOYS``).
        tolerances: optional inclusive (low, high) range per instrument key (``instrument_fit.TOLERANCE_KEYS``:
            kv_scale, al_filter_mm, scintillator_mm, scatter_fraction_scale, blur_sigma_px, dose_scale); None
            assumes the nominal instrument exactly.
        mode: with tolerances, ``joint`` (fit one instrument per ``predict`` batch) or ``marginal`` (average
            each image's likelihood over a grid of instruments); see the module docstring.
        n_fit_images: images of a batch (evenly spaced) the joint fit uses.
        alloys: the alloys the estimator weighs (default ``ALLOYS``); a subset makes the fit cheaper where the
            alloy is known (instrument calibration) and leaves each alloy's likelihood as it is.

    Attributes:
        mode: ``nominal`` (no tolerances), ``joint`` or ``marginal``.
        fitted_instrument: the instrument of the last joint-mode ``predict`` (all tolerance keys), else None.
    """

    def __init__(
        self,
        config: SimulationConfig,
        prior: Mapping[str, float] | None = None,
        tolerances: Mapping[str, Sequence[float]] | None = None,
        mode: str = "joint",
        n_fit_images: int = _N_FIT_IMAGES,
        *,
        alloys: Sequence[str] = ALLOYS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(n_fit_images, bool) or not isinstance(n_fit_images, int) or n_fit_images < 1:
            raise ValueError(f"n_fit_images must be an integer >= 1, got {n_fit_images!r}")
        self.config = config
        unknown = [a for a in alloys if a not in ALLOYS]
        if unknown or not alloys:
            raise ValueError(f"alloys must be a non-empty subset of {ALLOYS}, got {list(alloys)}")
        self.alloys: tuple[str, ...] = tuple(a for a in ALLOYS if a in alloys)
        self.log_prior = self._log_prior(prior)
        self.tolerances = parse_tolerances(tolerances)
        self.mode = mode if self.tolerances else "nominal"
        self.n_fit_images = n_fit_images
        self.fitted_instrument: dict[str, float] | None = None
        self._grid = np.arange(0.0, 1.5 * config.wedge_thickness_mm[1] + 2.0, _GRID_STEP_MM)
        self._draws = self._composition_draws()
        self._start = start_instrument(config, self.tolerances)
        self._set_instrument(instrument_config(config, self._start) if self.tolerances else config)

    @classmethod
    def within_declared(cls, config: SimulationConfig) -> PhysicsLimitEstimator:
        """An estimator of ``config`` that fits the instrument inside ``config``'s declared tolerances (the
        nominal instrument where none are declared)."""
        return cls(config, tolerances={key: (low, high) for key, low, high in config.tolerances} or None)

    def _set_instrument(self, instrument: SimulationConfig) -> None:
        """Build the likelihood's tables for images taken by ``instrument`` (a config differing in beam/detector)."""
        self._instrument = instrument
        weights = channel_weights(instrument, instrument.kv)
        reference = channel_weights(instrument, [instrument.reference_kv]).mean
        mu_mean, basis = self._composition_model(weights.energies_kev, weights.mean.mean(axis=0))
        self._f, self._g = self._tables(weights.mean, mu_mean, basis)  # (A, C, K), (A, C, n_comp, K)
        self._f_ref, self._g_ref = self._tables(reference, mu_mean, basis)
        self._df = np.gradient(self._f, _GRID_STEP_MM, axis=-1)
        self._dg = np.gradient(self._g, _GRID_STEP_MM, axis=-1)
        attenuation = np.exp(-self._grid[None, :, None] / 10.0 * mu_mean[:, None, :])  # (A, K, E)
        self._log_v = np.log(np.einsum("ake,ce->ack", attenuation, weights.var))
        self._open_var = weights.var.sum(axis=1)
        self._x_mm = instrument.column_offsets_mm()
        self._blur_factor = self._blur_variance_factor(instrument.blur_sigma_px)
        size = instrument.image_size
        self._blur_op = gaussian_matrix(size, instrument.blur_sigma_px)
        self._scatter_op = instrument.scatter_fraction * gaussian_matrix(
            size, instrument.scatter_width * size
        )
        self._blurred_scatter_op = self._blur_op @ self._scatter_op

    def _log_prior(self, prior: Mapping[str, float] | None) -> np.ndarray:
        if prior is None:
            return np.full(len(self.alloys), -np.log(len(self.alloys)))
        unknown = sorted(set(prior) - set(self.alloys))
        if unknown:
            raise ValueError(f"prior has unknown alloy(s) {unknown}; expected keys from {self.alloys}")
        values = np.array([float(prior.get(a, 0.0)) for a in self.alloys])
        if np.any(values < 0) or not values.sum() > 0:
            raise ValueError(f"prior must be non-negative with a positive sum, got {dict(prior)}")
        with np.errstate(divide="ignore"):
            return np.log(values / values.sum())

    def _composition_draws(self) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
        """Per alloy, the production spread's sampled specimens: (densities, elements, weight fractions)."""
        config = self.config
        rng = np.random.default_rng(_PRIOR_SEED)
        n_samples = _N_PRIOR_SAMPLES if config.composition_spread > 0 else 1
        draws = []
        for alloy in ALLOYS:  # every alloy draws, so a subset's draws are the full estimator's
            compositions = [
                sample_composition(alloy, rng, config.composition_spread) for _ in range(n_samples)
            ]
            densities = np.array([specimen_density(alloy, comp) for comp in compositions])
            elements, fractions = composition_matrix(compositions)
            if alloy in self.alloys:
                draws.append((densities, elements, fractions))
        return draws

    def _composition_model(self, energies: np.ndarray, spectrum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean attenuation spectrum (A, E) and its principal spread directions (A, n_comp, E), 1/cm.

        Directions are scaled so that the coefficient z_k has unit variance over the production spread.
        The PCA weights energies by the mid-wedge transmitted, detector-weighted ``spectrum`` (E,).
        """
        thickness_cm = np.mean(self.config.wedge_thickness_mm) / 10.0
        means, bases = [], []
        for densities, elements, fractions in self._draws:
            n_samples = densities.size
            samples = densities[:, None] * (fractions @ mass_attenuation_table(elements, energies))
            mean = samples.mean(axis=0)
            scale = np.sqrt(spectrum * np.exp(-mean * thickness_cm))
            relevant = (
                scale > 1e-6 * scale.max()
            )  # energies the filtered beam and specimen leave no photons at
            centred = (samples - mean)[:, relevant] * scale[relevant]
            eigval, eigvec = np.linalg.eigh(centred.T @ centred / max(n_samples - 1, 1))
            top = np.argsort(eigval)[::-1][:_N_COMPONENTS]
            sd = np.sqrt(np.clip(eigval[top], 0.0, None))
            basis = np.zeros((_N_COMPONENTS, energies.size))
            basis[: top.size, relevant] = (eigvec[:, top] * sd).T / scale[relevant]
            means.append(mean)
            bases.append(basis)
        return np.asarray(means), np.asarray(bases)

    def _tables(
        self, channel_weights_: np.ndarray, mu_mean: np.ndarray, basis: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """F = -ln T on the thickness grid (A, C, K) and its derivative along each basis direction."""
        thickness_cm = self._grid / 10.0
        attenuation = np.exp(-thickness_cm[None, :, None] * mu_mean[:, None, :])  # (A, K, E)
        transmission = np.einsum("ake,ce->ack", attenuation, channel_weights_)
        weighted_basis = np.einsum("ake,ane,ce->acnk", attenuation, basis, channel_weights_)
        derivative = thickness_cm * weighted_basis / transmission[:, :, None, :]
        return -np.log(transmission), derivative

    @staticmethod
    def _blur_variance_factor(sigma: float) -> float:
        if sigma <= 0:
            return 1.0
        return float(np.sum(blur_kernel(sigma) ** 2))

    def _gather(self, table: np.ndarray, lower: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Linear interpolation of table (A, C, [n,] K) at grid positions (N, A, C, W) -> (N, A, C, [n,] W)."""
        a_idx = np.arange(table.shape[0])[None, :, None, None]
        c_idx = np.arange(table.shape[1])[None, None, :, None]
        if table.ndim == 4:
            table = np.moveaxis(table, 2, 0)
            low = table[:, a_idx, c_idx, lower]
            return np.moveaxis(low + frac * (table[:, a_idx, c_idx, lower + 1] - low), 0, 3)
        low = table[a_idx, c_idx, lower]
        return low + frac * (table[a_idx, c_idx, lower + 1] - low)

    def _grid_position(self, thickness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.clip(thickness, 0.0, self._grid[-1] - 1e-9) / _GRID_STEP_MM
        lower = np.minimum(pos.astype(np.int64), self._grid.size - 2)
        return lower, pos - lower

    def _model(
        self, t0: np.ndarray, lam: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Column intensity Y (N, A, C, W), its derivatives wrt (t0, lambda, z_k) and photon variance."""
        config = self._instrument
        n_ch, width = len(config.kv), self._x_mm.size
        slope_x = config.nominal_slope * self._x_mm
        thickness = t0[:, :, None, None] + lam[:, :, None, None] * slope_x
        thickness = np.broadcast_to(thickness, (*t0.shape, n_ch, width))
        lower, frac = self._grid_position(thickness)
        g = self._gather(self._g, lower, frac)  # (N, A, C, n, W)
        log_t = self._gather(self._f, lower, frac) + np.einsum("nak,nackw->nacw", z, g)
        dlog_dt = self._gather(self._df, lower, frac) + np.einsum(
            "nak,nackw->nacw", z, self._gather(self._dg, lower, frac)
        )
        transmission = np.exp(-log_t)
        # derivatives of -ln T wrt (t0, lambda, z_1..z_n), then of T: dT = -T d(-ln T)
        dlog = np.concatenate([dlog_dt[None], (dlog_dt * slope_x)[None], np.moveaxis(g, 3, 0)], axis=0)
        stacked = np.concatenate([transmission[None], -transmission[None] * dlog], axis=0)
        photon_var = np.exp(self._gather(self._log_v, lower, frac))
        if config.scatter_fraction > 0:
            source = np.concatenate([(transmission * log_t)[None], stacked[1:] * (log_t - 1.0)], axis=0)
            photon_var = photon_var + (source[0] @ self._scatter_op.T) * self._open_var[:, None]
            stacked = stacked @ self._blur_op.T + source @ self._blurred_scatter_op.T
        else:
            stacked = stacked @ self._blur_op.T
        return stacked[0], stacked[1:], photon_var

    def _profile_variance(self, signal: np.ndarray, photon_var: np.ndarray, n_rows: np.ndarray) -> np.ndarray:
        """Variance of the -ln row-mean profile: photon noise, fixed-pattern gain and offset, / rows."""
        config = self._instrument
        var = config.fixed_pattern_gain_sigma**2 * signal**2 + config.fixed_pattern_offset_sigma**2
        if np.isfinite(config.dose):
            var = var + photon_var * self._blur_factor / config.dose
        return np.maximum(var / n_rows[:, None] / signal**2, 1e-12)

    @staticmethod
    def _profiles(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = images > 0
        n_rows = np.maximum(valid.sum(axis=2), 1).astype(np.float64)
        mean = np.where(valid, images, 0.0).sum(axis=2, dtype=np.float64) / n_rows
        return -np.log(np.clip(mean, 1e-6, None)), n_rows

    def _fit(  # noqa: PLR0915 (one vectorised fit; splitting it scatters the likelihood)
        self,
        images: np.ndarray,
        thickness: tuple[np.ndarray, float] | None = None,
        residuals: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per image and alloy: log-likelihood, fitted thickness and absorption, each (N, A).

        ``thickness``: optional (measured centre thickness per image (N,), its sd in mm), a Gaussian prior on
        t0 (a calibration specimen's thickness is known); without it t0 is free.
        """
        config = self._instrument
        n_img, n_ch = images.shape[:2]
        n_al, n_comp = len(self.alloys), _N_COMPONENTS
        profile, n_rows = self._profiles(images)
        data = profile[:, None]  # (N, 1, C, W)

        level = profile.mean(axis=-1)  # (N, C)
        t0 = np.zeros((n_img, n_al))
        for a in range(n_al):
            t0[:, a] = np.mean(
                [np.interp(level[:, c], self._f[a, c], self._grid) for c in range(n_ch)], axis=0
            )
        if thickness is not None:
            t_known, t_sd = np.asarray(thickness[0], dtype=np.float64)[:, None], float(thickness[1])
            t0 = np.broadcast_to(t_known, (n_img, n_al)).copy()
        lam = np.ones((n_img, n_al))
        z = np.zeros((n_img, n_al, n_comp))
        log_offset = np.zeros((n_img, n_al, n_ch))
        dark = np.zeros((n_img, n_al, n_ch))

        prior_var = np.concatenate(
            [
                [
                    np.inf if thickness is None else max(t_sd**2, 1e-12),
                    max(config.wedge_slope_sigma**2, 1e-12),
                ],
                np.ones(n_comp),
                np.full(n_ch, max(config.drift**2 + config.gain_sigma**2, 1e-12)),
                np.full(n_ch, max(config.offset_sigma**2, 1e-12)),
            ]
        )
        n_par = prior_var.size
        i_z, i_d, i_o = (
            2 + np.arange(n_comp),
            2 + n_comp + np.arange(n_ch),
            2 + n_comp + n_ch + np.arange(n_ch),
        )
        t_max = self._grid[-1] - 0.1

        for iteration in range(_N_ITERATIONS + 1):
            signal, d_signal, photon_var = self._model(t0, lam, z)
            shifted = np.maximum(signal + dark[..., None], 1e-6)
            resid = data - (-np.log(shifted) + log_offset[..., None])
            weight = 1.0 / self._profile_variance(signal, photon_var, n_rows)
            t_dev = t0 - (t_known if thickness is not None else t0)
            params = np.concatenate([t_dev[..., None], lam[..., None] - 1.0, z, log_offset, dark], axis=-1)
            first = 0 if thickness is not None else 1  # t0 has a prior only when its thickness is known
            objective = (weight * resid**2).sum(axis=(2, 3)) + (
                params[..., first:] ** 2 / prior_var[first:]
            ).sum(axis=-1)
            jac = np.zeros((n_par, *signal.shape))
            jac[: 2 + n_comp] = -d_signal / shifted
            for c in range(n_ch):
                jac[i_d[c], :, :, c] = 1.0
                jac[i_o[c], :, :, c] = -1.0 / shifted[:, :, c]
            weighted = jac * weight
            hess = np.einsum("pnacw,qnacw->napq", weighted, jac)
            hess[..., np.arange(first, n_par), np.arange(first, n_par)] += 1.0 / prior_var[first:]
            grad = np.einsum("pnacw,nacw->nap", weighted, resid) - np.concatenate(
                [np.zeros((n_img, n_al, first)), params[..., first:] / prior_var[first:]], axis=-1
            )
            if iteration == _N_ITERATIONS:
                break
            step = np.linalg.solve(hess, grad[..., None])[..., 0]
            t0 = np.clip(t0 + step[..., 0], 0.01, t_max)
            lam = np.clip(lam + step[..., 1], 0.8, 1.2)
            z = np.clip(z + step[..., i_z], -6.0, 6.0)
            log_offset = log_offset + step[..., i_d]
            dark = dark + step[..., i_o]

        if residuals is not None:
            residuals.append(resid * np.sqrt(weight))
        _, log_det = np.linalg.slogdet(hess)
        var = 1.0 / weight
        log_like = -0.5 * objective - 0.5 * np.log(var).sum(axis=(2, 3)) - 0.5 * log_det
        return log_like, t0, self._absorption(t0, z)

    def _absorption(self, t0: np.ndarray, z: np.ndarray) -> np.ndarray:
        """mu_eff (1/cm, reference kV) of every image and alloy (N, A) at its fitted thickness and composition."""
        alloy = np.arange(len(self.alloys))[None, :]
        lower, frac = self._grid_position(t0)
        log_t_ref = self._f_ref[alloy, 0, lower] + frac * (
            self._f_ref[alloy, 0, lower + 1] - self._f_ref[alloy, 0, lower]
        )
        g_ref = self._g_ref[alloy, 0, :, lower] + frac[..., None] * (
            self._g_ref[alloy, 0, :, lower + 1] - self._g_ref[alloy, 0, :, lower]
        )
        log_t_ref = log_t_ref + (z * g_ref).sum(axis=-1)
        return log_t_ref / (t0 / 10.0)

    def _frame(self, log_like: np.ndarray, thickness: np.ndarray, absorption: np.ndarray) -> pd.DataFrame:
        """Predictions from per-alloy log-likelihoods (N, A) and per-alloy thickness and absorption fits."""
        log_post = log_like + self.log_prior[None, :]
        prob = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
        best = prob.argmax(axis=1)
        rows = np.arange(len(best))
        frame = pd.DataFrame(
            {
                "alloy_pred": [self.alloys[i] for i in best],
                "thickness_pred": thickness[rows, best],
                "absorption_pred": absorption[rows, best],
            }
        )
        for a, alloy in enumerate(self.alloys):
            frame[f"prob_{alloy}"] = prob[:, a]
        return frame

    def predict(self, images: np.ndarray) -> pd.DataFrame:
        """Predict alloy, thickness (mm), absorption (mu_eff, 1/cm at the reference kV) and class posteriors.

        Args:
            images: (N, C, H, W) flat-field normalised radiographs with C = len(config.kv) and
                W = config.image_size.

        Returns:
            One row per image: ``alloy_pred``, ``thickness_pred``, ``absorption_pred`` and ``prob_<alloy>``
            for each alloy in ``ALLOYS`` order (rows sum to 1).
        """
        images = np.asarray(images)
        n_ch = len(self.config.kv)
        if images.ndim != 4 or images.shape[1] != n_ch or images.shape[3] != self.config.image_size:
            raise ValueError(
                f"images must have shape (N, {n_ch}, H, {self.config.image_size}) for kv={self.config.kv_label} "
                f"and image_size={self.config.image_size}, got {images.shape}"
            )
        if images.shape[0] == 0:
            columns = ["alloy_pred", "thickness_pred", "absorption_pred"] + [f"prob_{a}" for a in self.alloys]
            return pd.DataFrame(columns=columns)
        if self.mode == "joint":
            self.fit_instrument(images)
        if self.mode == "marginal":
            return self._frame(*self._marginal_fits(images))
        return self._frame(*self._fits(images))

    def goodness_of_fit(self, images: np.ndarray) -> np.ndarray:
        """Per image, the log-likelihood (N,) of the best-fitting alloy under the instrument the last ``predict``
        used (fitted in joint mode, else nominal), not refitted: low where no alloy explains the profile (another
        material, an open beam), the physics answer to "is this one of the five at all"."""
        images = np.asarray(images)
        if images.shape[0] == 0:
            return np.empty(0)
        return self._fits(images)[0].max(axis=1)

    def alloy_fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per image and alloy (``self.alloys`` order), the log-likelihood and the fitted thickness (mm), each
        (N, A), under the instrument the last ``predict`` used (not refitted): what :meth:`predict` and
        :meth:`goodness_of_fit` summarise."""
        images = np.asarray(images)
        if images.shape[0] == 0:
            return np.empty((0, len(self.alloys))), np.empty((0, len(self.alloys)))
        log_like, thickness, _ = self._fits(images)
        return log_like, thickness

    def _fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_fit`` in chunks: log-likelihood, thickness and absorption, each (N, A)."""
        fits = [self._fit(images[i : i + _CHUNK]) for i in range(0, images.shape[0], _CHUNK)]
        return tuple(np.concatenate(parts) for parts in zip(*fits, strict=True))  # type: ignore[return-value]

    def fit_instrument(self, images: np.ndarray) -> dict[str, float]:
        """The instrument shared by ``images`` (tolerance keys), fitted inside the tolerances on an evenly spaced
        subsample, labels unused; the estimator keeps it for the next ``predict`` of joint mode. Without
        tolerances: the nominal instrument."""
        if not self.tolerances:
            return nominal_instrument(self.config)
        n_fit = min(images.shape[0], self.n_fit_images)
        subset = images[np.unique(np.linspace(0, images.shape[0] - 1, n_fit).round().astype(np.int64))]
        fit = fit_instrument(
            lambda instrument: self.batch_log_likelihood(subset, instrument), self.tolerances, self._start
        )
        logger.debug("fitted instrument %s (%d evaluations)", fit.instrument, fit.n_evaluations)
        self.fitted_instrument = fit.instrument
        self._set_instrument(instrument_config(self.config, fit.instrument))
        return dict(fit.instrument)

    def use_instrument(self, instrument: Mapping[str, float]) -> None:
        """Take ``instrument`` (every tolerance key) as known: the next :meth:`alloy_fits` and
        :meth:`goodness_of_fit` use it (a joint-mode :meth:`predict` fits its own)."""
        self._set_instrument(instrument_config(self.config, instrument))

    def batch_log_likelihood(self, images: np.ndarray, instrument: Mapping[str, float]) -> float:
        """sum_i log sum_a p(a) L_i(a | instrument): the class-marginal log-likelihood of ``images`` taken together
        under ``instrument`` (tolerance keys), labels unused; the joint fit's objective. The estimator is left set
        to ``instrument``."""
        self._set_instrument(instrument_config(self.config, instrument))
        log_like = self._fits(np.asarray(images))[0] + self.log_prior[None, :]
        return float(logsumexp(log_like, axis=1).sum())

    def labelled_fit(
        self,
        images: np.ndarray,
        alloys: Sequence[str],
        thickness_mm: np.ndarray,
        thickness_sd_mm: float,
        instrument: Mapping[str, float],
        *,
        channel_kv_scale: Sequence[float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fit of images of known alloy and thickness under ``instrument`` (tolerance keys; ``channel_kv_scale``:
        a further factor on each channel's tube voltage): the instrument calibration's likelihood.

        Returns:
            (log-likelihood per image (N,), standardised residual profiles (N, C, W)) of each image's own alloy,
            its thickness held near ``thickness_mm`` by a Gaussian prior of sd ``thickness_sd_mm``.

        Raises:
            ValueError: an alloy not in ``ALLOYS``.
        """
        unknown = sorted(set(alloys) - set(self.alloys))
        if unknown:
            raise ValueError(f"alloys {unknown} are not among {self.alloys}")
        index = np.array([self.alloys.index(a) for a in alloys])
        self._set_instrument(instrument_config(self.config, instrument, channel_kv_scale))
        residuals: list[np.ndarray] = []
        log_like = self._fit(
            np.asarray(images), (np.asarray(thickness_mm, dtype=np.float64), thickness_sd_mm), residuals
        )[0]
        rows = np.arange(index.size)
        return log_like[rows, index], residuals[0][rows, index]

    def _marginal_fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per image, the likelihood averaged over a grid of instruments (uniform prior over the grid points).

        Thickness and absorption are those of the instrument with the highest likelihood for that image and alloy.
        """
        grid = instrument_grid(self.tolerances, self._start, _MARGINAL_LEVELS)
        fits = []
        for instrument in grid:
            self._set_instrument(instrument_config(self.config, instrument))
            fits.append(self._fits(images))
        log_like, thickness, absorption = (np.stack(parts) for parts in zip(*fits, strict=True))
        best = log_like.argmax(axis=0)[None]
        return (
            logsumexp(log_like, axis=0) - np.log(len(grid)),
            np.take_along_axis(thickness, best, axis=0)[0],
            np.take_along_axis(absorption, best, axis=0)[0],
        )
