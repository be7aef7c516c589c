"""Training: `hm-talker fit` (config, LightningModule, entry point)."""
