"""The training loop: trainer, one batch through the model (forward), what it saves (trainer_state), callbacks,
epoch meter, checkpoints, prediction."""
