"""Shared test setup: keep transformers and the hub offline (an online lookup hangs ~30 s)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
