"""Training attribute CNNs on CelebA-format folders: reading, ingesting, training, checkpoints.

It may use ``tlgan.models`` (the network definitions and the extractor file it writes) and the package helpers."""

from .celeba import CelebaIndex, read_celeba
from .ingest import IngestResult, ingest_celeba
from .trainer import AccuracyTable, TrainConfig, TrainResult, train_extractor

__all__ = ["CelebaIndex", "read_celeba", "IngestResult", "ingest_celeba", "AccuracyTable", "TrainConfig",
           "TrainResult", "train_extractor"]
