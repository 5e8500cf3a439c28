"""Downloads a person can trust, for the datasets that download themselves (the ``colab`` profile).

One data cache: the data root of :class:`lib.real_data.source.RealSource` (``CLIPMIS_DATA_ROOT``,
else the profile's ``data.root``). Every file lands where ``torchvision.datasets.<Dataset>(root,
download=True)`` would put it, so a folder that torchvision already filled is used as it is, and the
cache this module fills is one torchvision reads too.

A :class:`Resource` is one file to download (an archive or a plain file): its URLs (the first is
the host torchvision uses, later ones mirrors of the same bytes), its checksum and where that
checksum comes from (torchvision's own dataset class wherever it has one), and what it unpacks to.
:func:`ensure` makes a resource ready:

1. **resumable**: the bytes go to ``<file>.part``; an interrupted download continues from there with
   an HTTP ``Range`` request (a server that ignores it sends the whole file again, which is noticed);
2. **checksummed**: the whole file is verified (md5, sha256 or the git blob SHA-1 a repository
   records) before it gets its real name; a mismatch deletes the ``.part`` file and tries the next
   URL; **nothing half-downloaded is ever read**: only a verified file is renamed into place;
3. **unpacked atomically**: an archive is extracted into a temporary folder beside its destination,
   then moved into place, and a stamp ``<root>/.clipmis/<resource>.done`` is written last; a
   ``.extracting`` marker is set while files are being moved, so a move that was cut off is redone,
   never mistaken for a complete tree;
4. **one process at a time**: an OS file lock per resource (``<root>/.clipmis/<resource>.lock``), so
   parallel units (``make -j``) that both find the data missing download it once;
5. **with progress** (MB, rate, ETA; text lines under Make and papermill), and a failing host gives
   one message naming the dataset, every URL tried, the error and the manual fallback (where to put
   the file you download yourself; it is verified and unpacked from there).

What is reused from torchvision: the URLs and md5 sums of its dataset classes
(:func:`torchvision_checksums` reads them from the classes; a test compares every resource with
them), :func:`torchvision.datasets.utils.calculate_md5`, and
:func:`torchvision.datasets.utils.extract_archive` (tar, tar.gz, zip, gz and bz2 by suffix).
What stays hand-written, and why: torchvision's ``download_url`` writes straight to the final file
name (a cut-off download leaves a truncated file under the real name), cannot resume, tries one URL
and fails with "File not found or corrupted." without naming the dataset, URL or a fallback;
``download_and_extract_archive`` extracts in place (a cut-off extraction leaves a partial tree that
its ``_check_exists`` accepts) and cannot extract a subset of an archive's members (STL-10: the
test files without the 2.7 GB of unlabeled images).

``python -m lib.real_data.download <profile>`` downloads every resource of a profile's tasks
(:mod:`.download`); ``--list`` prints the table (dataset, host, size, checksum and its source).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import inspect
import json
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..progress import log, progress

USER_AGENT = "clip-task-misalignment (torchvision-compatible dataset cache)"
STATE_DIR = ".clipmis"      # under the data root: locks, stamps, markers
CHUNK = 1 << 20
TIMEOUT_S = 60
RETRIES = 3                 # resumed attempts per URL after a connection error
RETRY_WAIT_S = 1.0          # wait before a resumed attempt: 1, 2, 4 s


class DownloadError(FileNotFoundError):
    """A resource could not be downloaded or verified; the message names the dataset, the URLs
    tried, the error and the manual fallback. A FileNotFoundError, so that
    :meth:`lib.real_data.source.RealSource.check` reports it with the other missing data."""


@dataclass(frozen=True)
class Resource:
    key: str                      # identifier: the stamp and lock names
    dataset: str                  # shown in messages ("MNIST", "SVHN", ...)
    urls: tuple                   # first: the primary host; the others: mirrors of the same bytes
    path: str                     # the verified file, relative to the data root (torchvision's layout)
    md5: str | None = None
    sha256: str | None = None
    git_blob_sha1: str | None = None
    checksum_from: str = ""       # where the checksum comes from
    extract_to: str | None = None  # unpack the verified file into this folder (relative to the root)
    members: tuple | None = None   # tar members to extract (None: all of them)
    produces: tuple = ()          # files and folders (relative to the root) that exist once it is ready
    size_mb: float = 0.0          # download size (the table, the time estimate)
    keep_archive: bool = True     # False: delete the verified archive once it is unpacked
    note: str = ""

    @property
    def checksum(self) -> tuple[str, str]:
        for kind in ("md5", "sha256", "git_blob_sha1"):
            if getattr(self, kind):
                return kind, getattr(self, kind)
        raise ValueError(f"resource {self.key} has no checksum")

    @property
    def host(self) -> str:
        return urlparse(self.urls[0]).netloc


# ----------------------------------------------------------------------------- checksums
def file_digest(path: Path, kind: str) -> str:
    """The ``kind`` digest of a file: md5 (torchvision's calculate_md5), sha256, or the git blob SHA-1
    (``sha1(b"blob <size>\\0" + content)``, what ``git hash-object`` prints)."""
    path = Path(path)
    if kind == "md5":
        from torchvision.datasets.utils import calculate_md5  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
        return calculate_md5(str(path))
    if kind == "sha256":
        h = hashlib.sha256()
    elif kind == "git_blob_sha1":
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    else:
        raise ValueError(f"unknown checksum kind {kind!r}")
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, res: Resource) -> tuple[bool, str]:
    """(matches, digest found) of ``path`` against the resource's checksum."""
    kind, want = res.checksum
    got = file_digest(path, kind)
    return got == want.lower(), got


# ----------------------------------------------------------------------------- state
def _state(root: Path, res: Resource, suffix: str) -> Path:
    return Path(root) / STATE_DIR / f"{res.key}.{suffix}"


def is_ready(root: Path, res: Resource) -> bool:
    """The resource is in place: its stamp exists, or (no extraction was cut off and) everything it
    produces exists -- a cache torchvision filled has no stamps and is accepted as it is."""
    root = Path(root)
    if _state(root, res, "done").exists():
        return all((root / p).exists() for p in res.produces)
    if _state(root, res, "extracting").exists():
        return False
    return bool(res.produces) and all((root / p).exists() for p in res.produces)


@contextlib.contextmanager
def _locked(root: Path, res: Resource):
    """An exclusive OS lock on the resource (released when the block ends or the process dies)."""
    lock = _state(root, res, "lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # optional: fcntl is POSIX-only
    except ImportError:          # no fcntl (Windows): run unguarded
        yield
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                _log(f"{res.dataset}: another process is fetching {res.path}; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            # else: a filesystem without locks (some network mounts): go on unguarded
        yield
    finally:
        os.close(fd)


def _log(msg: str) -> None:
    log(f"[data] {msg}")


# ----------------------------------------------------------------------------- download
def _open(url: str, start: int):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _fetch_url(url: str, part: Path, res: Resource, show: bool) -> None:
    """Download ``url`` into ``part``, continuing a partial ``part`` (Range), retrying a broken
    connection from where it stopped."""
    last_exc: Exception | None = None
    for attempt in range(RETRIES + 1):
        have = part.stat().st_size if part.exists() else 0
        try:
            try:
                resp = _open(url, have)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and have:      # nothing beyond what we have: the .part is whole
                    return
                raise
            with resp:
                status = getattr(resp, "status", 200)
                if have and status != 206:       # the server ignored Range: it sends the whole file
                    have = 0
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else None
                if have:
                    _log(f"{res.dataset}: resuming {part.name[:-5]} at {have / 2**20:.1f} MB")
                bar = progress(total=None if total is None else max(1, round(total / 2**20)), unit="MB",
                               desc=f"download {res.dataset} {Path(res.path).name}", disable=not show)
                done_mb, got = round(have / 2**20), have
                bar.update(done_mb)
                with open(part, "ab" if have else "wb") as fh:
                    while chunk := resp.read(CHUNK):
                        fh.write(chunk)
                        got += len(chunk)
                        mb = round(got / 2**20)
                        if mb > done_mb:
                            bar.update(mb - done_mb)
                            done_mb = mb
                bar.close()
                if total is not None and got < total:
                    raise ConnectionError(f"connection closed after {got} of {total} bytes")
            return
        except urllib.error.HTTPError as exc:   # 404, 403: no retry helps; 5xx: the server may recover
            if exc.code < 500 or attempt == RETRIES:
                raise
            last_exc = exc
            time.sleep(RETRY_WAIT_S * 2 ** attempt)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, http.client.HTTPException) as exc:
            last_exc = exc
            if attempt < RETRIES:
                wait = RETRY_WAIT_S * 2 ** attempt
                _log(f"{res.dataset}: {type(exc).__name__}: {exc}; resuming in {wait:g} s "
                     f"(attempt {attempt + 2} of {RETRIES + 1})")
                time.sleep(wait)
    raise last_exc  # type: ignore[misc]


def fallback(root: Path, res: Resource) -> str:
    """How to put the file in place by hand."""
    kind, want = res.checksum
    hint = {"md5": "md5sum", "sha256": "sha256sum", "git_blob_sha1": "git hash-object"}[kind]
    return (f"Manual fallback: download {res.urls[0]} yourself (a browser, or `wget -c <url>`), check "
            f"`{hint} <file>` prints {want} ({res.checksum_from}), and put it at {Path(root) / res.path}; "
            f"then run again: the file is verified there and unpacked. Or point CLIPMIS_DATA_ROOT at a "
            f"folder where torchvision already downloaded {res.dataset}.")


def download(root: Path, res: Resource, show: bool = True) -> Path:
    """The verified file of ``res`` at ``<root>/<res.path>``; downloaded (resuming a ``.part``) when
    it is not there. Raises :class:`DownloadError` when every URL failed or gave other bytes."""
    root = Path(root)
    dest = root / res.path
    if dest.exists():
        ok, got = verify(dest, res)
        if ok:
            return dest
        _log(f"{res.dataset}: {dest} does not match its {res.checksum[0]} ({got} != {res.checksum[1]}); "
             f"downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in res.urls:
        try:
            _log(f"{res.dataset}: downloading {url} (~{res.size_mb:,.0f} MB) -> {dest}")
            _fetch_url(url, part, res, show)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with the URL
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
            continue
        ok, got = verify(part, res)
        if ok:
            os.replace(part, dest)
            return dest
        errors.append(f"{url}: downloaded {part.stat().st_size} bytes whose {res.checksum[0]} is {got}, "
                      f"expected {res.checksum[1]} ({res.checksum_from})")
        part.unlink()
    raise DownloadError(f"[data] could not download {res.dataset} ({Path(res.path).name}):\n  "
                        + "\n  ".join(errors) + f"\n{fallback(root, res)}")


# ----------------------------------------------------------------------------- extract
def _merge(src: Path, dest: Path) -> None:
    """Move the tree ``src`` into ``dest`` (entries already in ``dest`` are kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.listdir(src)):
        s, d = src / entry, dest / entry
        if not d.exists():
            os.replace(s, d)
        elif s.is_dir() and d.is_dir():
            _merge(s, d)


def _extract_members(archive: Path, to: Path, members: tuple) -> None:
    with tarfile.open(archive) as tar:
        wanted = [tar.getmember(m) for m in members]
        tar.extractall(to, members=wanted, filter="data")


def extract(root: Path, res: Resource, archive: Path) -> None:
    """Unpack the verified ``archive`` into ``<root>/<res.extract_to>`` through a temporary folder."""
    dest = Path(root) / res.extract_to
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".clipmis-extract-{res.key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _log(f"{res.dataset}: unpacking {archive.name} into {dest}")
    try:
        if res.members:
            _extract_members(archive, tmp, res.members)
        else:
            from torchvision.datasets.utils import extract_archive  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
            staged = tmp / archive.name
            if archive.suffix in (".gz", ".bz2", ".xz") and not archive.name.endswith((".tar.gz", ".tgz")):
                try:
                    os.link(archive, staged)      # torchvision's decompress removes its input
                except OSError:                   # another filesystem, or one without hard links (Drive)
                    shutil.copyfile(archive, staged)
                extract_archive(str(staged), str(tmp), remove_finished=True)
            else:
                extract_archive(str(archive), str(tmp))
        marker = _state(root, res, "extracting")
        marker.write_text(str(os.getpid()))
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure(root: Path, res: Resource, show: bool = True) -> None:
    """Make ``res`` ready under ``root`` (see the module doc); a no-op when it already is."""
    root = Path(root)
    if is_ready(root, res):
        return
    with _locked(root, res):
        if is_ready(root, res):   # another process finished it while we waited
            return
        archive = download(root, res, show)
        if res.extract_to is not None:
            extract(root, res, archive)
        missing = [p for p in res.produces if not (root / p).exists()]
        if missing:
            raise DownloadError(f"[data] {res.dataset}: {archive.name} was verified but did not produce "
                                f"{', '.join(missing)} under {root}: the archive's layout differs from "
                                f"the one expected.\n{fallback(root, res)}")
        _state(root, res, "done").write_text(json.dumps(
            {"url": res.urls[0], res.checksum[0]: res.checksum[1], "checksum_from": res.checksum_from,
             "produces": list(res.produces), "time": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1) + "\n")
        _state(root, res, "extracting").unlink(missing_ok=True)
        if not res.keep_archive and res.extract_to is not None and archive.exists():
            archive.unlink()
        _log(f"{res.dataset}: {Path(res.path).name} ready")


# ----------------------------------------------------------------------------- torchvision's checksums
def torchvision_checksums() -> dict[str, tuple[str, str]]:
    """``{file name: (url, md5)}`` of every download the torchvision dataset classes used here
    declare, read from the classes (attributes, or the source of ``download`` where torchvision
    keeps them in local variables: GTSRB, EuroSAT)."""
    from torchvision import datasets as tv  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
    out: dict[str, tuple[str, str]] = {}
    for name, md5 in tv.MNIST.resources:
        out[name] = (tv.MNIST.mirrors[0] + name, md5)
    for split, (url, name, md5) in tv.USPS.split_list.items():
        out[name] = (url, md5)
    for split, (url, name, md5) in tv.SVHN.split_list.items():
        out[name] = (url, md5)
    out[tv.CIFAR10.filename] = (tv.CIFAR10.url, tv.CIFAR10.tgz_md5)
    out[tv.STL10.filename] = (tv.STL10.url, tv.STL10.tgz_md5)
    out[Path(tv.DTD._URL).name] = (tv.DTD._URL, tv.DTD._MD5)
    for name, md5 in tv.Flowers102._file_dict.values():
        out[name] = (tv.Flowers102._download_url_prefix + name, md5)
    for url, md5 in tv.OxfordIIITPet._RESOURCES:
        out[Path(url).name] = (url, md5)
    out[Path(tv.RenderedSST2._URL).name] = (tv.RenderedSST2._URL, tv.RenderedSST2._MD5)
    for cls in (tv.GTSRB, tv.EuroSAT):
        src = inspect.getsource(cls.download)
        base = re.search(r'base_url = "([^"]+)"', src)
        for m in re.finditer(r'(?:f"\{base_url\}|")([^"{}]+\.zip)",\s*(?:download_root=[^,]+,\s*)?md5="([0-9a-f]{32})"',
                             src):
            url = (base.group(1) if base else "") + m.group(1)
            out[Path(m.group(1)).name] = (url, m.group(2))
    return out


# ----------------------------------------------------------------------------- command line
def table(resources) -> str:
    rows = ["| dataset | file | host | MB | checksum | from |", "|---|---|---|---|---|---|"]
    for r in resources:
        kind, value = r.checksum
        rows.append(f"| {r.dataset} | `{Path(r.path).name}` | {r.host} | {r.size_mb:,.0f} | {kind} `{value[:12]}...` "
                    f"| {r.checksum_from} |")
    return "\n".join(rows)
