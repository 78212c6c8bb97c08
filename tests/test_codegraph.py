"""Library code is part of a stage's fingerprint: imported modules, transitively, and versions."""

from __future__ import annotations

import importlib.metadata
import textwrap

from conftest import REPO, ToyProject

from cellstore.engine.codegraph import CodeGraph


def test_real_crops_stage_covers_its_library_modules_and_packages(tmp_path):
    graph = CodeGraph([REPO], cache_path=tmp_path / "code.json")
    code = graph.stage_code(REPO / "stages" / "crops.py", REPO)
    # Imported inside the stage function, and transitively through tasks.py (lazily there too).
    for path in (
        "stages/crops.py",
        "cellstore/imaging/crops.py",
        "cellstore/imaging/driver.py",
        "cellstore/imaging/tasks.py",
        "cellstore/imaging/__init__.py",
        "cellstore/parallel.py",
    ):
        assert path in code, path
    assert code["package:numpy"] == f"numpy=={importlib.metadata.version('numpy')}"
    assert "package:dask" in code  # imported inside a function of cellstore/parallel.py
    # The engine decides how stages run, not what they compute.
    assert not [p for p in code if p.startswith("cellstore/engine/") or p == "cellstore/stage.py"]
    # The cache answers the same without parsing again.
    graph.save()
    again = CodeGraph([REPO], cache_path=tmp_path / "code.json")
    assert again.stage_code(REPO / "stages" / "crops.py", REPO) == code
    assert not again._dirty


LIB = """
def scale(x):
    return x * 2
"""

STAGE = """
import pyarrow as pa
from cellstore.stage import stage

@stage
def numbers(*, n: int = 5):
    from toylib.maths import scale  # a lazy import, as image stages do

    return pa.table({"i": [scale(i) for i in range(n)]})
"""


def test_editing_a_library_function_plans_the_stage_and_downstream(toy: ToyProject):
    (toy.root / "toylib").mkdir()
    (toy.root / "toylib" / "__init__.py").write_text("")
    (toy.root / "toylib" / "helpers.py").write_text("UNUSED = 1\n")
    (toy.root / "toylib" / "maths.py").write_text(textwrap.dedent(LIB))
    toy.py("numbers", STAGE)
    result = toy.cli("build", check=True)
    assert "error" not in result.stderr
    assert set(p.action for p in toy.runner().plan()) == {"skip"}
    # An unrelated module of the same package: nothing to rebuild.
    (toy.root / "toylib" / "helpers.py").write_text("UNUSED = 2\n")
    assert set(p.action for p in toy.runner().plan()) == {"skip"}
    (toy.root / "toylib" / "maths.py").write_text("def scale(x):\n    return x * 3\n")
    plans = {p.stage: p for p in toy.runner().plan()}
    assert plans["numbers"].action == "build"
    assert plans["numbers"].reason == "code changed: toylib/maths.py"
    assert plans["doubled"].action == plans["total"].action == "build"
    assert "numbers" in plans["doubled"].reason
    dry = toy.cli("build", "--dry-run", check=True)
    assert "code changed: toylib/maths.py" in dry.stdout
    assert toy.build().ok
    assert toy.query("select sum(i) from numbers") == [(30,)]
