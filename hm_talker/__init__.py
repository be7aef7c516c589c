"""HM-Talker: audio-driven Gaussian talking heads."""
__version__ = "0.1.0"
