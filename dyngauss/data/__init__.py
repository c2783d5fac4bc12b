"""Datasets, cameras and the built-in synthetic scene."""
