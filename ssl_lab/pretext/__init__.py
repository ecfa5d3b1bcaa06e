"""Pretext tasks: one file per task, plus the one LightningModule that trains any of them."""
