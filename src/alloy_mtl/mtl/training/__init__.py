"""The training loop: trainer, callbacks, epoch meter, checkpoints, prediction."""
