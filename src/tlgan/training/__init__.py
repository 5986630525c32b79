"""Training attribute CNNs on CelebA-format folders: reading, ingesting, training, checkpoints."""

from .celeba import CelebaIndex, read_celeba
from .ingest import IngestResult, ingest_celeba
from .trainer import AccuracyTable, TrainConfig, TrainResult, train_extractor

__all__ = ["CelebaIndex", "read_celeba", "IngestResult", "ingest_celeba", "AccuracyTable", "TrainConfig",
           "TrainResult", "train_extractor"]
