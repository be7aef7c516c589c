"""Networks only, no Lightning: the whole model (talking_head.py), CMMM (cmmm.py), HMMM's gated fusion
(fusion.py), the Gaussian head (head.py), the deformation field (deformation.py, hash_grid.py), the audio
encoder (audio_encoder.py), the one MLP builder (layers.py) and their configs (config.py)."""
