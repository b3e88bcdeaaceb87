"""Datasets for the task YAMLs beside this file, built from the installed packages' files by
ptm_core.smollm2.data (lm-eval calls these through `custom_dataset: !function`)."""

import datasets

from ptm_core.smollm2 import data


def _dataset(rows):
    return {"test": datasets.Dataset.from_list(rows)}


def arc_easy(**_):
    return _dataset(data.general_test())


def sciriff_yesno(**_):
    return _dataset(data.science_test())
