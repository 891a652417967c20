"""MLflow tracking for alloy-mtl: run layout, epoch callback, model logging, promotion gate, inference.

Plain modules (no Kedro): ``config`` resolves and checks the tracking URI, ``params`` flattens parameters,
``runs`` owns the parent and nested runs of one ``kedro run``, ``layout`` decides what each dataset logs
where, ``callback`` logs per-epoch metrics, ``pyfunc_model`` is the served model (logged from code),
``model_logging`` logs a model bundle as that pyfunc, ``promotion`` is the champion/challenger gate and
``inference`` predicts a folder of images with a registered model. ``alloy_mtl.hooks`` wires them into Kedro.
"""
