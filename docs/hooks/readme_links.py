"""MkDocs hook: the links of the repository's top-level Markdown files must resolve too.

README.md and BENCHMARKS.md live outside the docs site, so MkDocs does not validate them. This
hook reads their Markdown links after the site is built and logs a warning (which `strict: true`
turns into a failed build) for a relative link to a file that does not exist, or to a heading
that a docs page does not have. Anchors are the ids MkDocs gave the headings of each page.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.readme_links")

CHECKED_FILES = ("README.md", "BENCHMARKS.md")
# [text](target) and [text](target "title"); images too. Code spans are removed first.
LINK_RE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_RE = re.compile(r"```.*?```|`[^`\n]*`", re.S)

_anchors: dict[str, set[str]] = {}


def _toc_ids(items: Any) -> set[str]:
    ids: set[str] = set()
    for item in items:
        ids.add(item.id)
        ids |= _toc_ids(item.children)
    return ids


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    _anchors[page.file.src_uri] = _toc_ids(page.toc)
    return html


def on_post_build(config: Any) -> None:
    root = Path(config.config_file_path).parent
    docs_dir = Path(config.docs_dir)
    for name in CHECKED_FILES:
        source = root / name
        if not source.exists():
            continue
        text = CODE_RE.sub("", source.read_text(encoding="utf-8"))
        for target in LINK_RE.findall(text):
            problem = _problem(root, docs_dir, target)
            if problem:
                log.warning("%s: link '%s' %s", name, target, problem)


def _problem(root: Path, docs_dir: Path, target: str) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        return None  # http:, https:, mailto: ...: not checked offline
    path_part, _, anchor = target.partition("#")
    if not path_part:
        return "points into the file itself, which is not checked" if anchor else None
    path = (root / path_part).resolve()
    if not path.exists():
        return "points to a file that does not exist"
    if not anchor:
        return None
    try:
        src_uri = path.relative_to(docs_dir.resolve()).as_posix()
    except ValueError:
        return "has an anchor into a file outside the docs site, which cannot be checked"
    if src_uri not in _anchors:
        return "points to a docs file that is not a page of the site"
    if anchor not in _anchors[src_uri]:
        return f"points to '#{anchor}', a heading {src_uri} does not have"
    return None
