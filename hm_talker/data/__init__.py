"""Readers of what preprocessing wrote and of clips to score, with no Lightning: an identity's manifest,
per-frame features and shard samples (identity.py, samples.py), the audio / AU windows around a frame
(windows.py), and any video / image / frame folder read a chunk of frames at a time (clips.py)."""
