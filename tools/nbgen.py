"""Author the stage notebooks (run once when a notebook's structure changes; outputs stay stripped).

The notebooks in notebooks/ are the source of truth that readers open; this script only saves
typing the common header (title, badges, bootstrap) consistently.
"""
import sys
from pathlib import Path

import nbformat as nbf

REPO = "qtm-peft/clip-task-misalignment"   # where the artifact is published (badges, Colab bootstrap)
NB = Path(__file__).resolve().parent.parent / "notebooks"

BOOTSTRAP = '''# Bootstrap: a no-op unless this runs on Colab (then: fetch the project, install it beside Colab's torch).
import os, sys
from pathlib import Path
if "google.colab" in sys.modules and not Path("clip-task-misalignment/lib").exists():
    import subprocess
    subprocess.run(["git", "clone", "--depth", "1", "https://github.com/%s", "clip-task-misalignment"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "clip-task-misalignment/requirements-colab.txt"], check=True)
    os.chdir("clip-task-misalignment")
root = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "lib" / "__init__.py").exists())
sys.path.insert(0, str(root))
os.chdir(root)''' % REPO


def header(name, title, what):
    colab = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb"
    binder = f"https://mybinder.org/v2/gh/{REPO}/main?labpath=notebooks%2F{name}.ipynb"
    md = (f"# {title}\n\n{what}\n\n"
          f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
          f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})\n\n"
          "Run by `make reproduce` through papermill (parameters from `params/`); the defaults in the "
          "`parameters` cell are the fast `smoke` values. All logic lives in `lib/`.")
    return [nbf.v4.new_markdown_cell(md), nbf.v4.new_code_cell(BOOTSTRAP)]


def params_cell(src):
    c = nbf.v4.new_code_cell(src.strip())
    c.metadata["tags"] = ["parameters"]
    return c


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, NB / f"{name}.ipynb")


def code(s):
    return nbf.v4.new_code_cell(s.strip())


def md(s):
    return nbf.v4.new_markdown_cell(s.strip())


if __name__ == "__main__":
    import importlib.util
    spec = importlib.util.spec_from_file_location("nbdefs", Path(__file__).parent / "nbdefs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in (sys.argv[1:] or mod.NOTEBOOKS):
        write(name, mod.NOTEBOOKS[name]())
        print("wrote", name)
