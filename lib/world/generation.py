"""Generation of the embedded world: seeded streams, class-balanced task splits
(:func:`render_split`), corpus chunks, the world's fingerprint, its verified files (manifest,
per-file records) and :func:`generate` / :func:`verify_world` / :func:`load_corpus`."""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import zipfile
from pathlib import Path

import numpy as np

from .. import paths
from ..io import write_bytes, write_json
from ..config import ConfigError, code_fingerprint, fingerprint
from ..progress import progress as tqdm  # text lines under papermill or Make, a bar when watched
from .constants import COLORS, S
from .design import check_class_words, check_design, corpus_entries
from .variants import TASKS

# The generator's code, as lib.config.code_fingerprint names it: every module of this package
# (lib/world/*.py, in name order), so the world is regenerated when any of them changes.
CODE_MODULES = tuple(f"world/{f.stem}" for f in sorted(Path(__file__).resolve().parent.glob("*.py")))


# ============================================================================ generation
def _stream(seed: int, *keys) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()[:8], "little")
    return np.random.default_rng(h)


def render_split(task: str, domain: str, split: str, n: int, seed: int,
                 diversity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced images of one (task, domain, split)."""
    r = TASKS[task]
    rng = _stream(seed, task, domain, split)
    labels = np.arange(n) % len(r.classnames)
    rng.shuffle(labels)
    pool = "test" if split == "test" else "train"
    imgs = np.empty((n, S, S, 3), np.uint8)
    for i, c in enumerate(labels):
        imgs[i], _ = r.render(int(c), domain, rng, pool, diversity)
    return imgs, labels.astype(np.int64)


def _split_file(args) -> tuple[str, dict]:
    """One task split rendered and written (``<task>__<domain>__<split>.npz``); its name and record."""
    out, task, domain, split, n, seed, diversity = args
    imgs, labels = render_split(task, domain, split, n, seed, diversity=diversity)
    name = f"{task}__{domain}__{split}.npz"
    return name, _atomic_savez(Path(out) / name, images=imgs, labels=labels)


def _corpus_chunk(args) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """One chunk of the corpus: images, captions, sources (task/domain/true class) and the class
    index each caption names (another class than the image's with the task's caption_noise)."""
    seed, chunk, n, entries, weights, levels = args
    rng = _stream(seed, "corpus", chunk)
    picks = rng.choice(len(entries), size=n, p=weights)
    imgs = np.empty((n, S, S, 3), np.uint8)
    caps, srcs, named = [], [], np.empty(n, np.int64)
    for i, k in enumerate(picks):
        task, domain = entries[k]
        r = TASKS[task]
        ncls = len(r.classnames)
        cls = int(rng.integers(ncls))
        imgs[i], info = r.render(cls, domain, rng, "train", levels[task]["diversity"])
        wrong = rng.random() < levels[task]["caption_noise"]
        other = int(rng.integers(ncls - 1))
        said = (other + (other >= cls)) if wrong else cls
        tmpl = str(rng.choice(r.caption_templates(domain)))
        color = info.get("color") or str(rng.choice(list(COLORS)))
        caps.append(tmpl.format(c=r.caption_phrase(said, info, rng), color=color))
        srcs.append(f"{task}/{domain}/{r.classnames[cls]}")
        named[i] = said
    return imgs, caps, srcs, named


def world_fingerprint(world_cfg: dict) -> str:
    return fingerprint({"world": world_cfg, "generator": code_fingerprint(*CODE_MODULES)})


# ---------------------------------------------------------------------------- verified files
# The world's manifest.json is written LAST and removed FIRST: it records the world's fingerprint
# and, per file, its size, sha256 and array shapes / dtypes.  A world counts as generated only when
# the manifest parses, its fingerprint is the current one and every file matches its record, so a
# zero-byte, truncated or rewritten file, or an interrupted regeneration, is never accepted.
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2


class WorldNotReady(FileNotFoundError):
    """The world is missing, stale or damaged; the message names the file and the command that fixes it."""


def _fix(profile: str) -> str:
    return (f"regenerate it with `python -m lib.world {profile}` (or `make world PROFILE={profile}`); "
            f"generation is deterministic, so the pretrained model stays valid")


def expected_files(wcfg: dict) -> list[str]:
    """The file names a world of this configuration consists of (the corpus last)."""
    return [f"{t}__{d}__{s}.npz" for t, d, s, _ in _split_jobs(wcfg)] + ["corpus.npz"]


def _split_jobs(wcfg: dict) -> list[tuple[str, str, str, int]]:
    sizes = wcfg["sizes"]
    jobs = []
    for task in wcfg["tasks"]:
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r} in world.tasks; valid: {', '.join(TASKS)}")
        r = TASKS[task]
        jobs.append((task, r.id_domain, "train", int(sizes["train"]) + int(sizes["val"])))
        for dom in [r.id_domain, *r.ood_domains]:
            jobs.append((task, dom, "test", int(sizes["test"])))
    return jobs


def _record(data: bytes, arrays: dict) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}


def _atomic_savez(path: Path, **arrays) -> dict:
    """Write ``path`` through a temporary name unique to this writer; returns the file's record."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    write_bytes(path, data)
    return _record(data, arrays)


def read_manifest(out: Path, wcfg: dict, profile: str) -> dict:
    """The world's manifest if it is complete and current; else WorldNotReady naming why."""
    manifest = out / MANIFEST
    if not manifest.exists():
        raise WorldNotReady(f"the embedded world is not generated in {out}: run `make world PROFILE={profile}` "
                            f"(or notebook 00_pretrain, or `python -m lib.world {profile}`)")
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise WorldNotReady(f"the world manifest {manifest} cannot be read ({exc}): the world counts as "
                            f"not generated; {_fix(profile)}") from exc
    if m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("files"), dict):
        raise WorldNotReady(f"the world manifest {manifest} is of an older format (no per-file records): "
                            f"{_fix(profile)}")
    if m.get("fingerprint") != world_fingerprint(wcfg):
        raise WorldNotReady(f"the world in {out} was generated for other world parameters or by other "
                            f"generator code (fingerprint {m.get('fingerprint')}, expected "
                            f"{world_fingerprint(wcfg)}): {_fix(profile)}")
    names = expected_files(wcfg)
    missing = [n for n in names if n not in m["files"]]
    if missing:
        raise WorldNotReady(f"the world manifest {manifest} does not list {', '.join(missing)}: {_fix(profile)}")
    return m


def verify_file(path: Path, record: dict, profile: str, data: bytes | None = None) -> dict:
    """Check one world file against its record (size, sha256, arrays); returns its arrays.

    Raises WorldNotReady naming the file and the fix when it is missing, truncated, rewritten or
    holds arrays of another shape.
    """
    if data is None:
        if not path.exists():
            raise WorldNotReady(f"{path} is missing: {_fix(profile)}")
        data = path.read_bytes()
    if len(data) != record.get("bytes"):
        raise WorldNotReady(f"{path} is damaged: {len(data)} bytes, the manifest records {record.get('bytes')} "
                            f"(truncated or rewritten): {_fix(profile)}")
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise WorldNotReady(f"{path} is damaged: its sha256 differs from the manifest's: {_fix(profile)}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WorldNotReady(f"{path} cannot be read as arrays ({exc}): {_fix(profile)}") from exc
    want = record.get("arrays", {})
    got = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
    if got != want:
        raise WorldNotReady(f"{path} holds arrays {got}, the manifest records {want}: {_fix(profile)}")
    return arrays


def verify_world(profile_cfg: dict, deep: bool = True) -> None:
    """Raise WorldNotReady unless the profile's world is complete and current.

    ``deep`` hashes every file (generate() does); otherwise only sizes are compared (cheap: the
    readers hash each file as they load it).
    """
    profile = profile_cfg["name"]
    wcfg = profile_cfg["world"]
    out = paths.world_dir(profile)
    m = read_manifest(out, wcfg, profile)
    for name in expected_files(wcfg):
        f, rec = out / name, m["files"][name]
        if deep:
            verify_file(f, rec, profile)
        elif not f.exists():
            raise WorldNotReady(f"{f} is missing: {_fix(profile)}")
        elif f.stat().st_size != rec.get("bytes"):
            raise WorldNotReady(f"{f} is damaged: {f.stat().st_size} bytes, the manifest records "
                                f"{rec.get('bytes')} (truncated or rewritten): {_fix(profile)}")


def generate(profile_cfg: dict, progress: bool = True, workers: int | None = None) -> Path:
    """Generate (or reuse) the profile's world under build/<profile>/world/. Returns that folder.

    Reused only when ``verify_world`` accepts every file; otherwise the manifest is removed FIRST
    (so an interrupted regeneration is never accepted), every file is rewritten and the manifest
    is written last.  A corpus in which some class of some task is never named is refused
    (WorldDesignError) before the manifest is written.
    """
    wcfg = profile_cfg["world"]
    levels = check_design(wcfg)
    entries, weights = corpus_entries(wcfg)
    out = paths.ensure(paths.world_dir(profile_cfg["name"]))
    fp = world_fingerprint(wcfg)
    manifest = out / MANIFEST
    try:
        verify_world(profile_cfg, deep=True)
        return out
    except WorldNotReady:
        pass
    manifest.unlink(missing_ok=True)          # invalidate before any file is rewritten
    seed = int(wcfg["seed"])
    jobs = _split_jobs(wcfg)
    n_corpus = int(wcfg["corpus"]["n_pairs"])
    chunk = 2000
    cjobs = [(seed, i, min(chunk, n_corpus - s), entries, weights, levels)
             for i, s in enumerate(range(0, n_corpus, chunk))]
    sjobs = [(str(out), task, dom, split, n, seed, levels[task]["diversity"]) for task, dom, split, n in jobs]
    # every split and corpus chunk from its own seeded stream: the same bytes in any process, in any order
    # (each worker renders whole files; records and parts are gathered in the jobs' order)
    workers = workers or min(2, os.cpu_count() or 1)
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    imap = pool.imap if pool else map
    try:
        records = dict(tqdm(imap(_split_file, sjobs), total=len(sjobs), desc="world: task splits",
                            disable=not progress))
        parts = list(tqdm(imap(_corpus_chunk, cjobs), total=len(cjobs), desc="world: corpus", disable=not progress))
    finally:
        if pool:
            pool.close()
            pool.join()
    imgs = np.concatenate([p[0] for p in parts])
    caps = np.array([c for p in parts for c in p[1]])
    srcs = np.array([c for p in parts for c in p[2]])
    named = np.concatenate([p[3] for p in parts])
    check_class_words(caps.tolist(), wcfg["tasks"])
    records["corpus.npz"] = _atomic_savez(out / "corpus.npz", images=imgs, captions=caps, sources=srcs,
                                          caption_labels=named)
    write_json(manifest, {"format": MANIFEST_FORMAT, "fingerprint": fp, "world": wcfg,
                          "n_corpus": len(caps), "files": records})
    return out


def load_corpus(profile_cfg: dict) -> dict:
    """The corpus: images, captions, sources ("task/domain/true class") and caption_labels (the
    class index each caption names; differs from the true class for the task's noisy captions)."""
    profile = profile_cfg["name"]
    out = paths.world_dir(profile)
    f = out / "corpus.npz"
    if not f.exists():
        raise WorldNotReady(f"{f} is missing: generate the world first (make world PROFILE={profile})")
    m = read_manifest(out, profile_cfg["world"], profile)
    z = verify_file(f, m["files"]["corpus.npz"], profile)
    return {"images": z["images"], "captions": z["captions"].tolist(), "sources": z["sources"].tolist(),
            "caption_labels": z["caption_labels"]}
