"""Labelled data sets for extraction and training: shipped samples (digits, glyphs) and user data.

``load_data(spec)`` resolves a data spec string (see ``DATA_SPEC_FORMS``) into a ``DataSource``.
"""

from cakd_viz.data.datasets import ArrayDataset, FolderDataset, Normalization, parse_normalize
from cakd_viz.data.sources import (
    DATA_SPEC_FORMS,
    SAMPLE_DATA,
    DataSource,
    load_data,
    load_data_for_model,
    sample_data,
)

__all__ = [
    "DATA_SPEC_FORMS",
    "SAMPLE_DATA",
    "ArrayDataset",
    "DataSource",
    "FolderDataset",
    "Normalization",
    "load_data",
    "load_data_for_model",
    "parse_normalize",
    "sample_data",
]
