"""Real datasets of the paper profile, read from their standard on-disk layouts.

Registered as the data source ``"real"``; a profile selects it with::

    data:
      source: real
      root: ~/data               # the env var CLIPMIS_DATA_ROOT overrides it
      download: false            # let dataset tooling (wilds, torchvision) fetch missing data
      shots: 16                  # ImageNet train images per class (null: all of them)
      seed: 0                    # every sampling below is a function of this seed
      val_fraction: 0.1          # validation share where a dataset has no official ID val
      max_test_per_domain: null  # optional cap on every test split (seeded subsample)
      tasks: [imagenet, iwildcam, fmow, camelyon17, eurosat]
      templates: {}              # optional {task: ["a photo of {}.", ...]} overrides

Tasks live in :data:`TASKS` (name -> task object); adding a dataset is adding one entry.
Every task knows its class names, prompt templates, domains, the folders it needs (``check``)
and how to list the files and labels of one (domain, split).  Nothing is scanned before
:meth:`RealSource.load` (``tasks()`` reads only small files shipped in ``lib/classnames``);
listings are cached in memory per source.

Layouts and split rules (``<root>`` is the data root):

* ``imagenet`` (objects, 1000 classes; ID domain ``imagenet``)
    - train/val: ``<root>/imagenet/train/<wnid>/*.JPEG``.  Per class, ``shots`` train images
      and ``val_shots = ceil(shots * val_fraction / (1 - val_fraction))`` further images
      (2 for 16 shots at 0.1) for validation, disjoint, drawn without replacement by a
      generator seeded with (seed, class index).  ``shots: null`` uses every train image and
      holds out ``val_fraction`` of each class.
    - test: ``<root>/imagenet/val/<wnid>/*.JPEG`` (ILSVRC2012 val sorted into wnid folders).
    - ``imagenet_v2``: ``<root>/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg``;
      the folder name is the class index.
    - ``imagenet_sketch``: ``<root>/imagenet-sketch/sketch/<wnid>/*.JPEG``.
    - ``imagenet_r`` / ``imagenet_a``: ``<root>/imagenet-r/<wnid>/*.jpg`` and
      ``<root>/imagenet-a/<wnid>/*.jpg``, 200-class subsets: the Split's ``classnames`` are
      the 200 names, labels index into them and ``meta['class_subset']`` holds the 1000-way
      indices.
    Class index = position of the wnid in the sorted list of the 1000 ILSVRC2012 wnids
    (``lib/classnames/imagenet_wnids.txt``); names and the 80 prompt templates are open_clip's
    ``IMAGENET_CLASSNAMES`` / ``OPENAI_IMAGENET_TEMPLATES``.
* ``iwildcam`` (WILDS iWildCam2020 v2.0, 182 classes): ``<root>/iwildcam_v2.0/metadata.csv``
  + ``train/<filename>``.  The ``split`` column is official: ID train/val/test =
  ``train``/``id_val``/``id_test``; domain ``ood``: test = ``test``, val = ``val``.
  Labels = column ``y``; class names = common English names (``lib/classnames/
  iwildcam_classnames.txt``, in ``y`` order).
* ``fmow`` (WILDS FMoW v1.1, 62 classes): ``<root>/fmow_v1.1/rgb_metadata.csv`` +
  ``images/rgb_img_<row>.png`` (row = position in the full csv).  Official time split:
  OOD test = ``split == test`` and year >= 2016; OOD val = ``split == val`` and
  2013 <= year < 2016; ID train/val/test = ``split == train/val/test`` and year < 2013;
  ``seq`` rows are never used.
* ``camelyon17`` (WILDS Camelyon17 v1.0, 2 classes): ``<root>/camelyon17_v1.0/metadata.csv`` +
  ``patches/patient_<p>_node_<n>/patch_patient_<p>_node_<n>_x_<x>_y_<y>.png``.  Official
  hospitals (the csv's 0-indexed ``center``): OOD test = center 2, OOD val = center 1, ID =
  centers 0, 3, 4.  WILDS has no ID test split, so ID test = the official ``id_val`` rows
  (``split == 1``) and ID val = ``val_fraction`` of the official train rows (seeded).
* ``eurosat`` (EuroSAT RGB, 10 classes, ID only): ``<root>/eurosat/2750/<ClassName>/*.jpg``.
  Per class, seeded: 30% test, ``val_fraction`` val, the rest train (60/10/30 by default).

``max_test_per_domain`` caps every ``test`` split with a seeded subsample (order kept).

``Split.fingerprint`` = sha256 (first 16 hex) of the sorted ``relative path<TAB>label`` lines
of the split, paths relative to the data root.  It does not read image bytes (too slow for
ImageNet): it changes when files, labels or the sampling change, not when a file is
rewritten in place, and it does not depend on where the data root is.

The package's modules (``lib.real_data`` re-exports the names the rest of the repository uses):

* :mod:`.common` -- file-listing helpers, error messages, :func:`~.common.fingerprint_files` and
  :class:`~.common.RealTask`, the base class of every task;
* :mod:`.imagenet`, :mod:`.wilds` (the WILDS base class and iWildCam, FMoW, Camelyon17),
  :mod:`.eurosat` -- one module per dataset;
* :mod:`.source` -- :data:`~.source.TASKS` (the registry, name -> task object),
  :class:`~.source.RealSource` and :func:`~.source.make`, registered as the data source ``"real"``.
"""
from __future__ import annotations

from .common import CLASSNAMES_DIR, IMAGE_EXTS, ROOT_HINT, SPLITS, RealTask, fingerprint_files
from .eurosat import EuroSATTask
from .imagenet import ImageNetTask
from .source import TASKS, RealSource, make  # importing it registers the data source "real"
from .wilds import FMOW_CATEGORIES, Camelyon17Task, FMoWTask, IWildCamTask, WildsTask
# a private helper the tests use (tests/fixtures_real.py, tests/test_real_data.py)
from .common import _read_list  # noqa: F401

__all__ = ["CLASSNAMES_DIR", "IMAGE_EXTS", "ROOT_HINT", "SPLITS", "RealTask", "fingerprint_files", "ImageNetTask",
           "WildsTask", "IWildCamTask", "FMOW_CATEGORIES", "FMoWTask", "Camelyon17Task", "EuroSATTask", "TASKS",
           "RealSource", "make"]
