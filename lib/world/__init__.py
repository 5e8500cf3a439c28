"""The embedded world (v2): eight downstream tasks in a 2x2x2 factorial design, and a pretraining
corpus, generated offline.

Everything is drawn from one *concept vocabulary*: a renderer per task that turns
``(class, domain, rng)`` into a 32x32 RGB image.  Real images that ship inside wheels are used where
they fit (scikit-learn's handwritten digits; scikit-image's LFW faces, horse silhouette, grass /
gravel / brick textures and immunohistochemistry slide); the rest is procedural.

The tasks mirror the kinds of datasets a CLIP PEFT study uses:

=============  ==========================  ====================  ===================================
task           mirrors                     ID domain             shift family (mild, strong)
=============  ==========================  ====================  ===================================
objects        ImageNet (general objects)  photo                 sketch (line drawing)
digits         MNIST / handwriting         ink (white on black)  colored (MNIST-M-like)
landcover      EuroSAT / FMoW (overhead)   summer                winter (snow, haze)
pathology      Camelyon17 (H&E patches)    hospital_a stain      hospital_b stain
camera_trap    iWildCam (camera traps)     day                   night (infrared, flash)
traffic_signs  GTSRB                       clear                 motion_blur (from a moving car)
flowers        Flowers102                  garden                vintage (sepia, faded print)
textures       DTD (describable textures)  flat                  warped (crumpled, folded surface)
=============  ==========================  ====================  ===================================

Each task has three domains ``[id, <shift>_mild, <shift>_strong]``: a renderer draws ONE sample
(class, pose, background, ...) and paints it in the ID look and in the fully shifted look; the
domain's image is ``(1 - s) * id + s * shifted`` with the severity ``s`` of :data:`SEVERITY`.

The profile's ``world`` mapping places every task in one cell of a 2x2x2 design (``world.design``)
over three factors whose levels are fixed in ``world.levels`` (docs/world.md):

* **coverage** -- the task's relative weight in the pretraining corpus (within a task the pairs are
  shared between its domains by ``world.corpus.domain_share``);
* **caption_noise** -- the fraction of the task's pretraining captions that name a WRONG class
  (uniform over the task's other classes; the image is unchanged);
* **diversity** -- how wide the nuisance factors (background, pose, scale, rotation, colour jitter,
  tint, clutter) are drawn, for the task's images of every domain and its corpus images.

Captions are natural phrases drawn from per-task caption templates; every class of every task is
named in some pretraining caption (``generate`` checks it).  Generation is deterministic for a seed:
every (task, domain, split) and every corpus chunk has its own seeded random stream.

The package's modules (``lib.world`` re-exports the names the rest of the repository uses):

* :mod:`.constants` -- the image grid, the colour and number vocabularies and the design's
  constants (severities, domain kinds, the 2x2x2 factors);
* :mod:`.render` -- the real-image banks, nuisance draws, drawing helpers and the
  :class:`~.render.Renderer` base class;
* :mod:`.renderers` -- the eight task renderers and :data:`~.renderers.RENDERERS`;
* :mod:`.design` -- the design's checks (:func:`~.design.check_design`, the corpus strata,
  every class named in some caption);
* :mod:`.generation` -- seeded streams, splits and corpus chunks, the verified files
  (manifest) and :func:`~.generation.generate` / :func:`~.generation.load_corpus`;
* :mod:`.source` -- :class:`~.source.EmbeddedSource`, registered as the data source ``"embedded"``;
* ``python -m lib.world <profile>`` (:mod:`.__main__`) verifies the world and regenerates it.
"""
from __future__ import annotations

from .. import paths
from .constants import COLORS, DOMAIN_KINDS, FACTORS, NUMBER_WORDS, S, SEVERITY
from .design import WorldDesignError, check_class_words, check_design, corpus_entries
from .generation import (CODE_MODULES, MANIFEST, MANIFEST_FORMAT, WorldNotReady, expected_files, generate,
                         load_corpus, read_manifest, render_split, verify_file, verify_world, world_fingerprint)
from .render import Renderer
from .renderers import (RENDERERS, CameraTrap, Digits, Flowers, Landcover, Objects, Pathology, Textures,
                        TrafficSigns)
from .source import EmbeddedSource  # importing it registers the data source "embedded"
# private helpers the tests call (tests/test_world.py)
from .generation import _corpus_chunk, _stream  # noqa: F401
from .render import _pool  # noqa: F401

__all__ = ["paths", "S", "COLORS", "NUMBER_WORDS", "SEVERITY", "DOMAIN_KINDS", "FACTORS", "WorldDesignError",
           "check_design", "corpus_entries", "check_class_words", "Renderer", "RENDERERS", "Objects", "Digits",
           "Landcover", "Pathology", "CameraTrap", "TrafficSigns", "Flowers", "Textures", "render_split",
           "world_fingerprint", "CODE_MODULES", "MANIFEST", "MANIFEST_FORMAT", "WorldNotReady", "expected_files",
           "read_manifest", "verify_file", "verify_world", "generate", "load_corpus", "EmbeddedSource"]
