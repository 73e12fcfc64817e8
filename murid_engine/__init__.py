"""MURID Studio engine: datasets, models, training, evaluation. Never imports Qt."""

__version__ = "0.1.0"
