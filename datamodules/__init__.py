"""LightningDataModules over preprocessed identities (WebDataset shards written by `hm-talker preprocess`)."""
from datamodules.talking_head import TalkingHeadDataModule

__all__ = ["TalkingHeadDataModule"]
