"""lib.progress: text lines under papermill / Make / no TTY, run labels on every line, Make's [k/N] counter."""
import io
import json
import os
import subprocess
import sys

import pytest

from lib import progress as P


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in (P.LABEL_ENV, P.MODE_ENV, P.EVERY_ENV, "MAKELEVEL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(P, "_label", None)


def run_text(n, step_s, every_s, total=None, label=None, **kw):
    if label:
        P.set_label(label)
    clock, out = Clock(), io.StringIO()
    bar = P.TextProgress(total=total, desc="pretrain", every_s=every_s, file=out, clock=clock, **kw)
    for i in range(n):
        clock.t += step_s
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.2f}")
    bar.close()
    bar.close()  # idempotent
    return out.getvalue().splitlines()


def test_text_lines_at_the_interval_with_label_rate_and_eta():
    lines = run_text(n=100, step_s=1.0, every_s=30, total=100, label="finetune objects/aclip  seed0")
    # start, one line per 30 s (t=30, 60, 90), end
    assert len(lines) == 5, lines
    assert all(l.startswith("[finetune objects/aclip seed0] pretrain: ") for l in lines)
    assert "0/100 (0%)" in lines[0]
    assert "30/100 (30%)" in lines[1] and "1.00 it/s" in lines[1] and "elapsed 0:30" in lines[1]
    assert "ETA 1:10" in lines[1] and "loss=0.03" in lines[1]
    assert "100/100 (100%)" in lines[-1] and "elapsed 1:40" in lines[-1] and "ETA" not in lines[-1]


def test_without_total_counts_units_and_reports_slow_rates_per_unit():
    lines = run_text(n=3, step_s=20.0, every_s=30)
    assert lines[1].endswith("loss=1.00")  # postfix of the previous step and "2 it" in lines[1] and "20.0 s/it" in lines[1]
    assert "3 it" in lines[-1]


def test_stopped_early_is_said():
    lines = run_text(n=4, step_s=1.0, every_s=100, total=10)
    assert len(lines) == 2 and "4/10" in lines[-1] and "stopped early" in lines[-1]


def test_inner_loops_without_leave_print_only_when_long():
    assert run_text(n=5, step_s=1.0, every_s=30, total=5, leave=False) == []
    lines = run_text(n=100, step_s=1.0, every_s=30, total=100, leave=False)
    assert len(lines) == 4 and "100/100" in lines[-1]  # three interval lines and the end


def test_disable_prints_nothing_but_counts():
    clock, out = Clock(), io.StringIO()
    bar = P.TextProgress(total=3, every_s=0, file=out, clock=clock, disable=True)
    for _ in range(3):
        bar.update()
    bar.close()
    assert out.getvalue() == "" and bar.n == 3


def test_iteration_yields_everything_and_ends_with_a_line():
    out = io.StringIO()
    items = list(P.TextProgress(iter(range(7)), desc="runs", every_s=1e9, file=out))
    assert items == list(range(7))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "runs: 7 it" in lines[-1]
    sized = io.StringIO()
    list(P.TextProgress(["a", "b"], desc="x", every_s=1e9, file=sized))
    assert "2/2 (100%)" in sized.getvalue()


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="every_s"):
        P.TextProgress(total=3, every_s=-1)
    with pytest.raises(ValueError, match="total"):
        P.TextProgress(total=-2)
    with pytest.raises(TypeError, match="update"):
        list(P.TextProgress(total=3, every_s=1e9, file=io.StringIO()))
    with pytest.raises(TypeError):
        P.set_label(3)


def test_every_from_environment(monkeypatch):
    monkeypatch.setenv(P.EVERY_ENV, "5")
    assert P.TextProgress(total=1, file=io.StringIO()).every_s == 5.0
    monkeypatch.setenv(P.EVERY_ENV, "soon")
    with pytest.raises(ValueError, match=P.EVERY_ENV):
        P.TextProgress(total=1, file=io.StringIO())


def test_mode_selection(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(P, "_under_papermill_or_make", lambda: False)
    assert P.text_mode(io.StringIO()) is True       # no TTY: text
    assert P.text_mode(Tty()) is False              # a terminal: bar
    monkeypatch.setenv(P.MODE_ENV, "text")
    assert P.text_mode(Tty()) is True
    monkeypatch.setenv(P.MODE_ENV, "bar")
    assert P.text_mode(io.StringIO()) is False
    monkeypatch.setenv(P.MODE_ENV, "widgets")
    with pytest.raises(ValueError, match="'text' or 'bar'"):
        P.text_mode()


def test_make_means_text(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.setenv("MAKELEVEL", "1")
    assert P.text_mode(Tty()) is True


def test_progress_returns_a_labelled_tqdm_bar_in_bar_mode(monkeypatch):
    monkeypatch.setenv(P.MODE_ENV, "bar")
    P.set_label("zero-shot smoke")
    bar = P.progress(total=4, desc="encode", file=io.StringIO())
    assert not isinstance(bar, P.TextProgress)
    assert bar.desc.startswith("[zero-shot smoke] encode")
    bar.update(4)
    bar.close()
    monkeypatch.setenv(P.MODE_ENV, "text")
    assert isinstance(P.progress(total=4, file=io.StringIO()), P.TextProgress)


def test_label_reaches_child_processes_and_log_lines(capsys):
    P.set_label("evaluate mini")
    P.log("wrote", 3, "rows")
    assert capsys.readouterr().out == "[evaluate mini] wrote 3 rows\n"
    code = "from lib import progress; print(progress.get_label())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "evaluate mini"


def test_stage_counter():
    line = P.stage_counter(3, 12, started=1000.0, label="finetune objects/aclip seed0", now=1065.0)
    assert line == "[ 3/12] finetune objects/aclip seed0 · elapsed 1:05 · ETA 3:15"
    assert P.stage_counter(0, 5, 0.0, now=10.0) == "[0/5] · elapsed 0:10 · ETA --:--"
    assert P.stage_counter(5, 5, 0.0, now=3725.0).endswith("elapsed 1:02:05 · all done")
    with pytest.raises(ValueError, match="done"):
        P.stage_counter(6, 5, 0.0)
    with pytest.raises(ValueError, match="total"):
        P.stage_counter(0, 0, 0.0)


def test_stage_counter_cli():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "lib.progress", "counter", "2", "4", "0", "run", "x"],
                         capture_output=True, text=True, cwd=root)
    assert out.returncode == 0 and out.stdout.startswith("[2/4] run x · elapsed ")
    bad = subprocess.run([sys.executable, "-m", "lib.progress", "counter", "two", "4", "0"],
                         capture_output=True, text=True, cwd=root)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow  # subprocess: starts a papermill kernel (fast tier: issue #21 item 9)
def test_papermill_kernel_gets_text_lines(tmp_path):
    """The real thing: a notebook executed by papermill (outside Make) prints text lines, not a widget."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from lib import progress\n"
        "progress.set_label('nb test')\n"
        "print('text_mode', progress.text_mode())\n"
        "for _ in progress.progress(range(3), desc='loop', every_s=0): pass")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, dst = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", P.MODE_ENV, P.LABEL_ENV)}
    subprocess.run([sys.executable, "-m", "papermill", str(src), str(dst), "-k", "python3",
                    "--no-progress-bar"], check=True, env=env, capture_output=True, cwd=tmp_path)
    outputs = json.loads(dst.read_text())["cells"][-1]["outputs"]
    assert all(o.get("output_type") == "stream" for o in outputs), outputs  # no widget
    text = "".join("".join(o["text"]) for o in outputs)
    assert "text_mode True" in text
    assert "[nb test] loop: 3/3 (100%)" in text
