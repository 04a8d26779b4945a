"""The docs stay true: every ```python block in docs/ runs as is, and every link resolves.

A block that is deliberately not runnable must be fenced differently
(```text, ```py-fragment); prefer runnable blocks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.mark import ParameterSet

DOCS = Path(__file__).resolve().parent.parent / "docs"

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")

# Pages that another part of the project writes; a link to them is allowed before they exist.
WRITTEN_ELSEWHERE = {DOCS / "benchmarks.md"}

STATEMENT_PAGES = ["step", "section", "if-switch", "for", "return", "go", "wait", "waitfor"]


def doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def python_blocks() -> list[ParameterSet]:
    params: list[ParameterSet] = []
    for page in doc_pages():
        text = page.read_text(encoding="utf-8")
        for n, match in enumerate(FENCE.finditer(text), start=1):
            line = text.count("\n", 0, match.start()) + 2
            rel = page.relative_to(DOCS).as_posix()
            params.append(pytest.param(match.group(1), id=f"{rel}:{n}@L{line}"))
    return params


@pytest.mark.parametrize("code", python_blocks())
def test_python_block_runs_as_is(code: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"snippet failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("name", STATEMENT_PAGES)
def test_every_statement_page_has_a_runnable_snippet(name: str) -> None:
    page = DOCS / "statements" / f"{name}.md"
    assert FENCE.search(page.read_text(encoding="utf-8")), f"{page} has no ```python block"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_relative_links_point_at_existing_files(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (page.parent / target).resolve()
        if not path.exists() and path not in WRITTEN_ELSEWHERE:
            missing.append(target)
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_index_links_every_docs_page() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = {(DOCS / target).resolve() for target in LINK.findall(index)}
    pages = {p.resolve() for p in doc_pages()} - {(DOCS / "index.md").resolve()}
    assert pages <= linked, f"not linked from docs/index.md: {sorted(str(p) for p in pages - linked)}"
