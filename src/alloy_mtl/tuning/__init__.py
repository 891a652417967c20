"""Population Based Training of an architecture's optimizer, learning rate and weight decay on Ray Tune.

Plain modules, no Kedro: ``params`` (the typed search space), ``trainable`` (one population member on the
project's Trainer), ``population`` (Ray Tune's PopulationBasedTraining, Ray imported lazily), ``lineage``
(histories, exploit lineage, best configuration), ``plot`` (population progress) and ``best`` (the
``pbt_best.yml`` that ``train_<arch>`` can start from; no Ray needed).
"""
