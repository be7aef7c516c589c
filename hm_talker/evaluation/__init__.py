"""Scoring driven clips: one scorer over chunks of frames (scoring.py), the protocols that compose
driving and scoring (protocols.py: self-driven, cross-driven by a video or by speech, any pair), the one
report writer (report.py: metrics.json / .md, summary.json, W&B) and the `evaluate` command (cli.py)."""
