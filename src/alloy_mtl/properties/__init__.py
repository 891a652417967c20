"""The alloy-property study (Kang 2025, arXiv 2512.22740): when multi-task learning helps and when it hurts.

Plain modules, no Kedro: element data (``elements``), the physical laws behind the generated data (``laws``),
the generator (``generator``), CSV validation (``schema``), composition descriptors (``features``), the
split (``split``), tabular models (``models``), the study runner (``study``), statistics (``stats``) and
the report (``report``). The Kedro wiring lives in ``alloy_mtl.pipelines.alloy_properties``.
"""
