"""docs/library.md's examples run, in order, in one namespace, so the guide cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel
GUIDE = Path(__file__).parents[2] / "docs" / "library.md"


def test_every_example_of_the_library_guide_runs(compile_c, bpffs):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) >= 7
    namespace: dict[str, object] = {"obj_path": compile_c("guide"), "pin_dir": str(bpffs)}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{GUIDE}:example {i + 1}", "exec"), namespace)
