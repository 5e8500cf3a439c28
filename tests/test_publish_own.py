"""A profile published in a folder of its own (study4: ``publish: own``): paper_figures/<profile>/
beside the default profile's paper_figures/, with its own manifest and README block; publishing the
default profile keeps it, and the default's manifest does not list it."""
import pytest

from lib import manifest, paths
from lib.analysis import report as R
from lib.pipeline import publish as P


def test_published_dir_follows_the_profile_file():
    assert P.published_dir("study3") == paths.PAPER_FIGURES
    assert P.published_dir("study4") == paths.PAPER_FIGURES / "study4"
    assert P.published_dir("no_such_profile") == paths.PAPER_FIGURES


def test_a_nested_publication_is_not_the_parents_file_and_survives_publishing_the_parent(tmp_path):
    top = tmp_path / "pf"
    (top / "notebooks").mkdir(parents=True)
    (top / "a.csv").write_text("x\n1\n")
    (top / "notebooks" / "n.ipynb").write_text("{}")
    own = top / "study4"
    own.mkdir()
    (own / "b.csv").write_text("y\n2\n")
    manifest.write_manifest(own, {"profile": "study4"})
    manifest.write_manifest(top, {"profile": "study3"})
    assert manifest.listed_files(top) == ["a.csv", "notebooks/n.ipynb"]
    assert not manifest.verify_manifest(top) and not manifest.verify_manifest(own)
    # the default profile's new folder replaces the old one whole: the nested publication is carried over
    tmp = tmp_path / "pf.tmp"
    tmp.mkdir()
    (tmp / "c.csv").write_text("z\n3\n")
    P._swap(tmp, top)
    assert (top / "study4" / "b.csv").read_text() == "y\n2\n" and not (top / "a.csv").exists()
    assert not manifest.verify_manifest(own)


def test_own_readme_block_has_its_own_markers_and_names_its_folder(tmp_path):
    begin, end = R.markers("study4")
    assert (begin, end) == ("<!-- results:study4:begin -->", "<!-- results:study4:end -->")
    assert R.markers() == (R.README_BEGIN, R.README_END)
    text = f"{R.README_BEGIN}\nTOP\n{R.README_END}\n{begin}\nOLD\n{end}\n"
    out = R.replace_block(text, "NEW\n", "study4")
    assert "TOP" in out and "OLD" not in out and "NEW" in out
    with pytest.raises(ValueError, match="results:study4:begin"):
        R.replace_block(f"{R.README_BEGIN}\n{R.README_END}\n", "x", "study4")


def test_own_block_is_compact_and_names_only_its_folder():
    """study4's README block, regenerated from its published tables: no processor / world-check / training /
    seed-noise lines (the folder keeps them), the claims and the trade-off figure from paper_figures/study4/."""
    import pandas as pd
    d = P.published_dir("study4")
    t = {f.stem: pd.read_csv(f) for f in sorted(d.glob("*.csv"))}
    full = R.readme_block(t["headline"], t["claims"], "study4", "paper_figures/study4/tradeoff.png",
                          t.get("world_check"), folder="paper_figures/study4")
    block = R.readme_block(t["headline"], t["claims"], "study4", "paper_figures/study4/tradeoff.png",
                           t.get("world_check"), folder="paper_figures/study4", compact=True)
    assert "**World check**" in full and "**World check**" not in block and "Published run" not in block
    assert "**2a**" in block and "(paper_figures/study4/tradeoff.png)" in block
    names = set(__import__("re").findall(r"`(paper_figures/[^`]*)`", block))
    assert names and all(n.startswith("paper_figures/study4/") for n in names)
