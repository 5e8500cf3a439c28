"""What every stage does first: load the profile, seed, set threads, load the base model."""
from __future__ import annotations

import errno
import os
import random
import socket
import sys

import numpy as np
import torch

from .. import config, models, paths, progress
from ..config import ConfigError
from ..io import read_json


def cli(work) -> int:
    """Run a command-line entry point: a bad input or a missing file is one line on stderr and
    exit status 1 (the message names the problem and the fix), not a traceback."""
    try:
        work()
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(profile: str, stage: str | None = None, seed: int = 0, label: str | None = None) -> dict:
    """Load the profile, seed everything, set threads, make torch deterministic.

    Threads of this process: the stage's ``threads`` parameter when it is set (a fixed number, so
    the sums split the same way on any machine: same bytes), else :func:`unit_threads` (the CPUs
    this process may use, shared with the units on its host). Torch's intra-op threads and the BLAS
    libraries' (numpy) get that number; one inter-op thread.
    """
    cfg = config.load_profile(profile)
    seed_everything(seed)
    fixed = config.stage_params(stage, profile).get("threads") if stage else None
    threads = fixed or unit_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (a second setup() in one kernel)
        pass
    try:
        from threadpoolctl import threadpool_limits  # optional: threadpoolctl may be absent (not a dependency)
        threadpool_limits(limits=threads)
    except ImportError:
        pass
    gpu = pick_gpu(profile)
    if gpu is not None:
        torch.cuda.set_device(gpu)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if label or stage:
        progress.set_label(label or stage)
    return cfg


def _env_int(env, name: str, default: int) -> int:
    """``env[name]`` as an integer; ``default`` when unset, empty or not a number."""
    try:
        return int(env.get(name) or default)
    except ValueError:
        return default


def available_cpus(environ=None) -> int:
    """The CPUs this process may use: ``SLURM_CPUS_PER_TASK`` inside a SLURM job step (``srun -c 8``),
    else the process's CPU affinity (``taskset``, cgroups' cpusets, SLURM's binding), else every core.
    Never the core count of the machine that started Make: a unit runs where LAUNCH sends it."""
    env = os.environ if environ is None else environ
    n = _env_int(env, "SLURM_CPUS_PER_TASK", 0)
    if n > 0:
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # macOS / Windows: no affinity call
        return os.cpu_count() or 1


def unit_threads(environ=None) -> int:
    """Threads for one unit: ``CLIPMIS_THREADS`` when set (an explicit choice), else
    :func:`available_cpus` divided by ``CLIPMIS_UNITS_PER_HOST`` (the Makefile sets JOBS there when the
    units share this host, 1 when LAUNCH gives each its own allocation), at least 1."""
    env = os.environ if environ is None else environ
    explicit = _env_int(env, "CLIPMIS_THREADS", 0)
    if explicit > 0:
        return explicit
    share = max(1, _env_int(env, "CLIPMIS_UNITS_PER_HOST", 1))
    return max(1, available_cpus(env) // share)


_gpu_lock = None  # held for the life of the process


def pick_gpu(profile: str) -> int | None:
    """On a machine with several visible GPUs, the first GPU no other unit of this profile holds.

    ``make -jN`` starts N units at once; each takes a GPU through an OS file lock
    (``build/.<profile>.<host>.gpu<i>.lock``, released when the process ends), so parallel units spread
    over the GPUs instead of all landing on ``cuda:0``. The host name is part of the lock's name: on a
    shared filesystem, GPU 0 of one node and GPU 0 of another are different GPUs. With one visible GPU
    (e.g. ``srun --gres=gpu:1`` sets ``CUDA_VISIBLE_DEVICES``), or none, this does nothing; a
    filesystem without locks makes it fall back to sharing by process id."""
    global _gpu_lock
    if not torch.cuda.is_available() or torch.cuda.device_count() <= 1:
        return None
    if _gpu_lock is not None:
        return _gpu_lock[1]
    n = torch.cuda.device_count()
    try:
        import fcntl  # optional: fcntl may be absent (POSIX only; Windows has none)
    except ImportError:
        return os.getpid() % n
    folder = paths.ensure(paths.build_root())
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname().split(".")[0]) or "host"
    for i in range(n):
        fd = os.open(folder / f".{profile}.{host}.gpu{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):   # no locks on this filesystem
                break
            continue
        _gpu_lock = (fd, i)
        return i
    return os.getpid() % n  # more units than GPUs: share


def base_model(cfg: dict):
    """The profile's zero-shot model: the self-pretrained checkpoint or an open_clip tag."""
    m = cfg["model"]
    pretrained = m.get("pretrained", "self")
    if pretrained == "self":
        ck = paths.checkpoint(cfg["name"])
        if not ck.exists() or read_json(ck.with_suffix(".json")) is None:
            raise FileNotFoundError(f"no complete pretrained checkpoint at {ck}: run the pretraining stage "
                                    f"first (make pretrain PROFILE={cfg['name']})")
        pretrained = str(ck)
    bundle = models.create(m["name"], pretrained=pretrained, device=cfg.get("device", "auto"))
    # Frozen: the base model is only encoded with (methods train their own copies), and frozen
    # weights take the same attention code path as the frozen parts of a fine-tuned classifier.
    bundle.model.requires_grad_(False)
    return bundle


def base_fingerprint(cfg: dict):
    """What identifies the base model in a run's request: the checkpoint's recorded state hash."""
    if cfg["model"].get("pretrained", "self") != "self":
        return cfg["model"]
    meta = read_json(paths.checkpoint(cfg["name"]).with_suffix(".json"))
    if not meta or "state_fingerprint" not in meta:
        raise FileNotFoundError(f"{paths.checkpoint(cfg['name']).with_suffix('.json')} is missing or damaged: "
                                f"rerun the pretraining stage (make pretrain PROFILE={cfg['name']})")
    return meta["state_fingerprint"]
