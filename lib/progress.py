"""Progress a person can follow, in a terminal, a notebook or a log.

* ``progress(iterable=None, total=None, desc=...)`` -- a tqdm-compatible progress object
  (iterate it, or ``update(n)``, ``set_postfix(...)``, ``close()``, ``with``). In an interactive
  terminal or notebook it is a tqdm bar; when nobody watches a bar (papermill, Make, no TTY) it
  prints plain text lines instead -- one at the start, one every ``every_s`` seconds (default
  ``CLIPMIS_PROGRESS_EVERY`` or 15 s) and one at the end -- with count, rate, elapsed and ETA.
  With ``leave=False`` (inner loops) there is no start line, and an end line only if the loop
  lasted long enough to print an interval line.
* ``set_label("finetune objects/aclip seed0")`` -- once per process; every text line and every
  ``log(...)`` line starts with ``[label]`` so that the lines of parallel runs can be told apart.
  The label is also put in the environment (``CLIPMIS_RUN_LABEL``), so child processes inherit it
  and a runner can set it from outside.
* ``stage_counter(done, total, started)`` -- the ``[k/N] ... ETA mm:ss`` line Make prints as runs
  finish (also ``python -m lib.progress counter DONE TOTAL STARTED [LABEL]``).

``CLIPMIS_PROGRESS=text|bar`` forces one mode. Nothing here imports torch or the rest of ``lib``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Iterable, Iterator

LABEL_ENV = "CLIPMIS_RUN_LABEL"
MODE_ENV = "CLIPMIS_PROGRESS"
EVERY_ENV = "CLIPMIS_PROGRESS_EVERY"
DEFAULT_EVERY_S = 15.0

_label: str | None = None


# ------------------------------------------------------------------ run label
def set_label(label: str) -> None:
    """Name this process's run; every progress and log line carries it from now on."""
    global _label
    if not isinstance(label, str):
        raise TypeError(f"run label must be a string, got {type(label).__name__}")
    _label = " ".join(label.split())
    os.environ[LABEL_ENV] = _label


def get_label() -> str:
    """The run label: the one set in this process, else the inherited ``CLIPMIS_RUN_LABEL``."""
    return _label if _label is not None else " ".join(os.environ.get(LABEL_ENV, "").split())


def _prefix() -> str:
    label = get_label()
    return f"[{label}] " if label else ""


def log(*parts, file=None) -> None:
    """``print`` with the run label in front, flushed at once (log lines of parallel runs stay apart)."""
    msg = " ".join(str(p) for p in parts)
    print(_prefix() + msg, file=file or sys.stdout, flush=True)


# ------------------------------------------------------------------ formatting
def format_seconds(s: float | None) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above; ``--:--`` when unknown."""
    if s is None or not math.isfinite(s) or s < 0:
        return "--:--"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _format_rate(rate: float, unit: str) -> str:
    if rate <= 0 or not math.isfinite(rate):
        return f"- {unit}/s"
    if rate >= 1:
        return f"{rate:.2f} {unit}/s" if rate < 10 else f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


def stage_counter(done: int, total: int, started: float, label: str = "",
                  now: float | None = None) -> str:
    """``[k/N] <label> · elapsed m:ss · ETA m:ss`` for Make; ``started`` is a ``time.time()`` value.

    The estimate assumes the remaining units take as long on average as the finished ones."""
    if total <= 0:
        raise ValueError(f"stage_counter: total must be positive, got {total}")
    if not 0 <= done <= total:
        raise ValueError(f"stage_counter: done must be in [0, {total}], got {done}")
    elapsed = max(0.0, (time.time() if now is None else now) - started)
    eta = elapsed / done * (total - done) if done else None
    width = len(str(total))
    head = f"[{done:>{width}}/{total}]" + (f" {label}" if label else "")
    tail = [f"elapsed {format_seconds(elapsed)}", "all done" if done == total else f"ETA {format_seconds(eta)}"]
    return " · ".join([head, *tail])


# ------------------------------------------------------------------ mode
def _under_papermill_or_make() -> bool:
    if "MAKELEVEL" in os.environ:
        return True
    try:  # papermill starts the kernel: its parent's command line names papermill
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        return "papermill" in cmd
    except OSError:
        pass
    try:
        import psutil  # optional: psutil may be absent
        return "papermill" in " ".join(psutil.Process(os.getppid()).cmdline())
    except Exception:  # no psutil or no access: assume a person is watching
        return False


def _in_ipython_kernel() -> bool:
    return "ipykernel" in sys.modules and type(sys.stdout).__module__.startswith("ipykernel")


def text_mode(stream=None) -> bool:
    """True when progress should be printed as text lines rather than drawn as a bar."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced in ("text", "bar"):
        return forced == "text"
    if forced:
        raise ValueError(f"{MODE_ENV}={forced!r}: use 'text' or 'bar' (or leave it unset)")
    if _under_papermill_or_make():
        return True
    if _in_ipython_kernel():
        return False  # an interactive notebook: a widget bar
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def _every_default() -> float:
    raw = os.environ.get(EVERY_ENV)
    if raw is None:
        return DEFAULT_EVERY_S
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{EVERY_ENV}={raw!r} is not a number of seconds") from None
    if v < 0:
        raise ValueError(f"{EVERY_ENV}={raw!r} must be >= 0 seconds")
    return v


# ------------------------------------------------------------------ text progress
class TextProgress:
    """The subset of tqdm's interface that ``lib`` uses, printed as lines at an interval."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 every_s: float | None = None, unit: str = "it", file=None, disable: bool = False,
                 leave: bool = True, clock=time.monotonic, **_ignored):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        if total is not None and total < 0:
            raise ValueError(f"progress total must be >= 0, got {total}")
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.every_s = _every_default() if every_s is None else float(every_s)
        if self.every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.file, self.disable, self.clock, self.leave = file, disable, clock, leave
        self.lines = 0  # text lines printed so far
        self.n = 0
        self.postfix = ""
        self.closed = False
        self.start = clock()
        self._last = self.start
        if not disable and leave:
            self._emit("start")

    # tqdm-compatible
    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = self.clock()
        if now - self._last >= self.every_s and not (self.total is not None and self.n >= self.total):
            self._emit(now=now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable and (self.leave or self.lines):
            self._emit("done")

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress has no iterable: call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress has no total")
        return self.total

    # the line
    def line(self, state: str = "", now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if self.total:
            count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{self.n} {self.unit}"
        parts = [f"{self.desc}:" if self.desc else "", count]
        if state != "start":
            parts.append(_format_rate(rate, self.unit))
            parts.append(f"elapsed {format_seconds(elapsed)}")
            if state != "done" and self.total:
                eta = (self.total - self.n) / rate if rate > 0 else None
                parts.append(f"ETA {format_seconds(eta)}")
        if self.postfix:
            parts.append(self.postfix)
        if state == "done" and self.total is not None and self.n < self.total:
            parts.append("stopped early")
        return _prefix() + " ".join(p for p in parts if p)

    def _emit(self, state: str = "", now: float | None = None) -> None:
        now = self.clock() if now is None else now
        print(self.line(state, now), file=self.file or sys.stdout, flush=True)
        self._last = now
        self.lines += 1


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "",
             every_s: float | None = None, unit: str = "it", disable: bool = False,
             leave: bool = True, file=None):
    """A progress object for ``iterable`` or ``total`` units: text lines or a tqdm bar (see module doc)."""
    if text_mode(file):
        return TextProgress(iterable, total=total, desc=desc, every_s=every_s, unit=unit,
                            file=file, disable=disable, leave=leave)
    from tqdm.auto import tqdm  # start-up: tqdm 0.08 s on the 0.14 s grid --progress path
    label = get_label()
    return tqdm(iterable, total=total, desc=f"[{label}] {desc}" if label else desc, unit=unit,
                disable=disable, leave=leave, file=file)


def _main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "counter":
        try:
            done, total, started = int(argv[1]), int(argv[2]), float(argv[3])
        except ValueError:
            print("usage: python -m lib.progress counter DONE TOTAL STARTED_EPOCH_SECONDS [LABEL]",
                  file=sys.stderr)
            return 2
        print(stage_counter(done, total, started, " ".join(argv[4:])), flush=True)
        return 0
    print("usage: python -m lib.progress counter DONE TOTAL STARTED_EPOCH_SECONDS [LABEL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
