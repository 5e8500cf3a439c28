"""lib.pipeline.notebook_job: several notebooks in one kernel, each as papermill's recipe would leave it."""
import json

import nbformat
import pytest

from lib import paths
from lib.pipeline import grid, notebook_job


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\ntask = "objects"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return str(path)


@pytest.mark.slow  # starts a Jupyter kernel (~3 s)
def test_one_kernel_an_empty_namespace_each_and_a_failure_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    nb = _notebook(tmp_path / "nb.ipynb", "import os\n"
                   "assert 'leftover' not in globals(), 'the namespace of the notebook before is still here'\n"
                   "leftover = task\n"
                   "assert task != 'pathology', 'this task fails'\n"
                   "print('pid', os.getpid(), 'task', task)")
    assert notebook_job.run("smoke", ["objects", "other"], notebook=nb) == 0
    pids = set()
    for t in ("objects", "other"):
        out = paths.unit_notebook("smoke", t)
        assert out.exists() and not out.with_name(out.name + ".tmp.ipynb").exists()
        text = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", []))
        assert f"task {t}" in text
        pids.add(text.split()[1])
    assert len(pids) == 1, "both notebooks ran in one kernel"
    timing = json.loads(notebook_job.job_timing("smoke", ["objects", "other"]).read_text())
    assert timing["tasks"] == ["objects", "other"] and timing["end"] > timing["start"]
    log = capsys.readouterr().err
    assert "[finetune objects] pid" in log and "[finetune other] pid" in log and "Executing Cell" not in log
    # a failing notebook: kept as .failed.ipynb, the job stops there with 1; the one before it is kept
    assert notebook_job.run("smoke", ["objects", "pathology", "never"], notebook=nb) == 1
    failed = paths.unit_notebook("smoke", "pathology")
    assert failed.with_name(failed.name + ".failed.ipynb").exists() and not failed.exists()
    assert paths.unit_notebook("smoke", "objects").exists() and not paths.unit_notebook("smoke", "never").exists()
    assert "FAILED" in capsys.readouterr().err


def test_bad_arguments_are_refused_before_any_kernel(capsys):
    assert notebook_job.main(["smoke"]) == 2
    assert notebook_job.main(["smoke", "nope"]) == 2
    assert "'nope' not a fine-tuning unit (task) of profile 'smoke'; valid: objects, pathology" in capsys.readouterr().err
    assert notebook_job.main(["smoke", "objects", "objects"]) == 2
    assert notebook_job.main(["smoke", "a;rm -rf x"]) == 2
    assert notebook_job.main(["nope", "objects"]) == 2


def test_study3_jobs_are_balanced_and_cover_every_task_once():
    """8 fine-tuning jobs of 4 tasks, each with one of the 8 seed-noise ('_b') tasks (the largest units);
    evaluation is grouped the same way; a profile without tasks_per_job keeps one task per job."""
    from lib import config
    tasks = list(grid.units(config.load_profile("study3"), validate=False))
    jobs = grid.task_jobs("study3", "02_finetune", tasks)
    assert len(jobs) == 8 and all(len(j) == 4 for j in jobs)
    assert sorted(t for j in jobs for t in j) == sorted(tasks)
    assert all(sum(t.endswith("_b") for t in j) == 1 for j in jobs)
    assert grid.task_jobs("study3", "03_evaluate", tasks) == jobs
    text = grid.make_include("study3")
    assert text.count("$(call finetune_unit,") == 8 and text.count("$(call evaluate_unit,") == 8
    assert f"$(call finetune_unit,{' '.join(jobs[0])})" in text
    smoke = list(grid.units(config.load_profile("smoke"), validate=False))
    assert grid.task_jobs("smoke", "02_finetune", smoke) == [[t] for t in smoke]
    assert grid.task_jobs("smoke", "02_finetune", []) == []


def test_an_evaluation_job_names_its_tasks_then_its_methods():
    from lib.pipeline.evaluate import parse_args
    assert parse_args(["study3", "a", "b", "--methods", "full", "lora"]) == ("study3", ["a", "b"], ["full", "lora"])
    assert parse_args(["smoke", "objects", "full", "lora"]) == ("smoke", ["objects"], ["full", "lora"])
    for bad in (["smoke", "objects"], ["smoke", "--methods", "full"], ["smoke", "a", "--methods"],
                ["smoke", "a", "--methods", "full", "--methods", "lora"]):
        assert parse_args(bad) is None, bad
