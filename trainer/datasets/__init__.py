"""Labelled EBSD datasets for lattice classification (paper 1's task on simulated frames).

The numpy side of the trainer: materials and classes (``lattices``), cameras and empty
frames (``cameras``), one shard (``synthesis``), cached splits (``store``) and scores
(``scoring``), training sets imported from the user's own indexed scans (``labelled``);
4D-STEM (SPED) shards for paper 2's task (``sped_synthesis``). Generation is numpy and
numba on the CPU (the numpy projector), cached on disk, so a GPU never waits on it and any
machine can make the same data.
"""
from .labelled import LabelledDataError, import_labelled
from .lattices import (
    DEMO_PHASES,
    HOLOHEDRY,
    LATTICES,
    ORDERED_SUPERSTRUCTURES,
    TRAINING_MATERIALS,
    blind_materials,
    lattice_index,
    training_materials,
)
from .scoring import paper2_scores, score
from .store import (
    SPED_SPLIT,
    SPLITS,
    SplitSpec,
    build_split,
    class_counts,
    class_names,
    class_point_groups,
    dataset_cache_root,
    load_split,
    read_split,
    sped_split_sizes,
    split_spec,
    write_split,
)
from .synthesis import Shard, ShardPlan, synthesize_shard

__all__ = [
    "DEMO_PHASES",
    "HOLOHEDRY",
    "LabelledDataError",
    "LATTICES",
    "ORDERED_SUPERSTRUCTURES",
    "SPED_SPLIT",
    "SPLITS",
    "TRAINING_MATERIALS",
    "Shard",
    "ShardPlan",
    "SplitSpec",
    "blind_materials",
    "build_split",
    "class_counts",
    "class_names",
    "class_point_groups",
    "dataset_cache_root",
    "import_labelled",
    "lattice_index",
    "load_split",
    "paper2_scores",
    "read_split",
    "score",
    "sped_split_sizes",
    "split_spec",
    "synthesize_shard",
    "training_materials",
    "write_split",
]
