"""Multi-task training core: models, losses, gradient methods, trainer (torch only)."""
