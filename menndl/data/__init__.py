"""Datasets for the search: built-in ones and user HDF5 / .npz files.

Importing this package pulls in numpy and h5py only; scikit-learn and
mnist1d are imported when a built-in dataset is first loaded.
"""

from __future__ import annotations

from menndl.data.dataset import Dataset, load_dataset, open_configured

__all__ = ["Dataset", "load_dataset", "open_configured"]
