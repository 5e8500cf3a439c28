"""World v3 (lib/world/variants.py, params/profiles/study3.yaml): 8 renderer families x 4 instances,
invented class words, a replicated 2x2x2 design checked by lib.world.check_design."""
import copy
import re
from collections import Counter

import numpy as np
import pytest

from lib import config, world
from lib.world import variants as V

CFG = config.load_profile("study3")


def test_every_family_has_four_instances_of_four_classes():
    fams = Counter(V.family_of(t) for t in V.VARIANTS)
    assert fams == {f: 4 for f in world.RENDERERS}
    for t, r in V.VARIANTS.items():
        n = len(r.family.classnames)
        assert len(r.classnames) == V.N_CLASSES == len(set(r.classes))
        assert all(0 <= c < n for c in r.classes)
        assert r.domains == r.family.domains and V.family_of(t) == r.family.name


def test_class_words_are_invented_and_distinct():
    words = [w for r in V.VARIANTS.values() for w in r.classnames]
    assert len(words) == len(set(words)) == 128
    assert all(re.fullmatch(r"[bdfgklmnprstvz][aeiou][bdfgklmnprstvz][aeiou][bdfgklmnprstvz]", w) for w in words)
    v2 = {w for r in world.RENDERERS.values() for c in r.classnames for w in c.lower().split()}
    vocab = {w for r in world.RENDERERS.values() for ts in r.captions.values() for t in ts
             for w in re.findall(r"[a-z]+", t.lower())} | set(world.COLORS) | set(world.NUMBER_WORDS)
    assert not set(words) & (v2 | vocab)
    assert V.pseudowords(128) == V.pseudowords(128)  # fixed, not drawn per run


def test_an_instance_draws_its_familys_scene_for_the_mapped_class():
    r = V.VARIANTS["objects_c"]
    for k, c in enumerate(r.classes):
        a, _ = r.render(k, r.id_domain, np.random.default_rng(3), "train", 0.7)
        b, _ = r.family.render(c, r.family.id_domain, np.random.default_rng(3), "train", 0.7)
        assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    assert r.caption_phrase(1, {}, rng) == r.classnames[1]


def test_study3_design_is_the_preregistered_replicated_design():
    w = CFG["world"]
    assert w["tasks"] == list(V.VARIANTS)
    levels = world.check_design(w)
    assert len(levels) == 32
    cells = Counter(tuple(w["design"][t][f] for f in world.FACTORS) for t in w["tasks"])
    assert len(cells) == 8 and set(cells.values()) == {4}
    for fam in world.RENDERERS:
        ts = [t for t in w["tasks"] if V.family_of(t) == fam]
        assert all(len({w["design"][t][f] for t in ts}) == 2 for f in world.FACTORS), fam
        # one half of the 2^(3-1) fraction per family: the parity of high/noisy/varied is the family's
        parity = {sum(w["design"][t][f] == world.FACTORS[f][1] for f in world.FACTORS) % 2 for t in ts}
        assert len(parity) == 1, fam


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(objects_a=dict(d["objects_b"])), r"at least 4 tasks in every cell"),
    (lambda d: [d[t].update(coverage="high", caption_noise="clean") for t in d if t.startswith("digits_")],
     r"family 'digits' .* holds both levels of only 1 factor"),
])
def test_replicated_design_rules(edit, match, monkeypatch):
    if "family" in match:  # the family rule on its own: the cell counts are checked first
        monkeypatch.setattr(world.design, "MIN_PER_CELL", 0)
    w = copy.deepcopy(CFG["world"])
    edit(w["design"])
    with pytest.raises(world.WorldDesignError, match=match):
        world.check_design(w)
