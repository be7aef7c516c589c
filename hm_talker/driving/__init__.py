"""Driving a trained model with speech: load a checkpoint into a ready model (checkpoint.py), turn any
sound into the model's audio inputs and the speaker's statistics (speech.py), render frames as a stream
(render.py), and the `hm-talker infer` command (infer.py). No Lightning: the same road serves `infer`,
every `evaluate` protocol, validation during `fit` and the demo."""
