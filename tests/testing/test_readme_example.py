"""The docs' "Testing your app" example runs as a user would run it: a fresh pytest.

The block after the ``fragment: a pytest module`` marker in ``docs/guides/testing.md`` is written
to an empty folder and run by pytest in a subprocess, with only the installed package's plugins
(anyio's, and ours via its entry point).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guides" / "testing.md"


def readme_example() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- fragment: a pytest module[^>]*-->\n```python\n(.*?)```", text, re.DOTALL
    )
    assert match is not None, "the testing guide lost its example test module"
    return match.group(1)


def test_the_testing_guide_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_chat.py").write_text(readme_example(), encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_chat.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # 4 tests x 2 backends, all run: none skipped, none deselected.
    assert re.search(r"^8 passed in ", completed.stdout, re.MULTILINE), completed.stdout
