"""Dump the PNG outputs of an executed notebook to a folder (to look at them)."""
import base64
import sys
from pathlib import Path

import nbformat

nb = nbformat.read(sys.argv[1], as_version=4)
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
k = 0
for i, c in enumerate(nb.cells):
    for o in c.get("outputs", []):
        data = o.get("data", {})
        if "image/png" in data:
            p = out / f"{Path(sys.argv[1]).stem}_cell{i}_{k}.png"
            p.write_bytes(base64.b64decode(data["image/png"]))
            print(p)
            k += 1
