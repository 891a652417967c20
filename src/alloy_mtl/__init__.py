"""alloy-mtl: multi-task learning on X-ray radiographs of aluminium alloys."""

__version__ = "0.1.0"
