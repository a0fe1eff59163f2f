"""The API client with an admin key and a small dataset to submit jobs with: the training tests' fixtures."""

from tests.training.conftest import client, yolo_dataset

__all__ = ["client", "yolo_dataset"]
