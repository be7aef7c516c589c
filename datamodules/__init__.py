"""LightningDataModules over preprocessed identities (WebDataset shards written by `hm-talker preprocess`,
and their per-frame feature arrays for CMMM)."""
from datamodules.feature_windows import FeatureWindowDataModule
from datamodules.talking_head import TalkingHeadDataModule

__all__ = ["FeatureWindowDataModule", "TalkingHeadDataModule"]
