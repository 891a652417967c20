"""Multi-task learning in torch: models/, losses/, gradients/, loading/, optim/, training/, parallel/, with the
typed parameters (``params``, ``tasks``) and the one-call training recipe (``recipe``).

Sub-packages are imported by their full path; this package re-exports nothing. Old flat module paths
(``alloy_mtl.mtl.model``, ...) still import, as aliases of their new homes (:mod:`alloy_mtl.mtl._moved`).
"""

from alloy_mtl.mtl._moved import install

install(__name__.rsplit(".", 1)[0])
