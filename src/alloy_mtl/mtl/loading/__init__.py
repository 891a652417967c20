"""Data to tensors: array datasets, samplers, loaders, device-resident batches, the shared resize."""
