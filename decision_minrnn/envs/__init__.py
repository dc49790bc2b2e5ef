"""Environments: reference scores and targets per task, and batched evaluation rollouts."""
