"""Training and evaluation: one loop for 1 CPU process and N GPUs under torchrun (DDP)."""
