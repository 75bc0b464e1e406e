"""The documentation in ``docs/``, rendered to HTML on the gateway (``/docs/<page>``).

Every denial body links ``/docs/errors#<code>``, so the error reference must resolve where the
person is: on the gateway. Headings get GitHub's anchors (``### missing-key`` → ``#missing-key``),
links between pages (``security.md#rotate``) become ``/docs/security#rotate``, images come from
``/docs/images/``; a relative link to a file of the repository that is not a page (``bench/…``)
is shown as its text only, since the gateway does not serve the repository. Raw HTML in the
Markdown is not rendered (markdown-it's ``html`` off), so a page can never carry a script. The
README is ``/docs/readme`` and the changelog ``/docs/changelog`` (the guides link both).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
IMAGES = DOCS / "images"
README = "readme"
# Pages from the repository's root (their links to ``docs/…`` are relative to it).
ROOT_PAGES = {README: REPO / "README.md", "changelog": REPO / "CHANGELOG.md"}
_PAGE = re.compile(r"[a-z][a-z0-9-]*")
_LINK = re.compile(r"(?:\./)?(?P<up>\.\./)?(?P<page>[A-Za-z0-9-]+)\.md(?P<anchor>#[^\s]*)?")


def source(name: str) -> Path | None:
    """The Markdown file of page ``name``; None when there is no such page."""
    if not _PAGE.fullmatch(name):
        return None
    path = ROOT_PAGES.get(name, DOCS / f"{name}.md")
    return path if path.is_file() else None


def slug(text: str, seen: dict[str, int]) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes, de-duplicated."""
    base = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"


def _href(href: str, from_root: bool) -> str | None:
    """Where a link points on the gateway; None for a repository file the gateway does not serve."""
    if href.startswith(("#", "/", "https://", "http://", "mailto:")):
        return href
    if href.startswith("docs/") and from_root:
        return _href(href.removeprefix("docs/"), from_root=False)
    match = _LINK.fullmatch(href)
    if match is None:
        return None
    lower = match["page"].lower()
    page = lower if lower in ROOT_PAGES else match["page"]
    return f"/docs/{page}{match['anchor'] or ''}"


def _links(children: list[Token], from_root: bool) -> list[Token]:
    """The inline tokens with links rewritten (and links to unserved files unwrapped)."""
    kept: list[Token] = []
    unwrapping = 0
    for child in children:
        if child.type == "link_open":
            href = _href(str(child.attrGet("href")), from_root)
            if href is None:
                unwrapping += 1
                continue
            child.attrSet("href", href)
        elif child.type == "link_close" and unwrapping:
            unwrapping -= 1
            continue
        elif child.type == "image":
            src = str(child.attrGet("src")).removeprefix("docs/")
            if src.startswith("images/"):
                child.attrSet("src", f"/docs/{src}")
        kept.append(child)
    return kept


def _rewrite(tokens: list[Token], from_root: bool) -> None:
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            token.attrSet("id", slug("".join(c.content for c in inline.children or ()), seen))
        if token.children:
            token.children = _links(token.children, from_root)


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def render(name: str) -> tuple[str, str] | None:
    """``(title, html)`` of page ``name``; None when there is no such page."""
    path = source(name)
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    markdown = _markdown()
    tokens = markdown.parse(text)
    _rewrite(tokens, from_root=name in ROOT_PAGES)
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), name)
    return title, markdown.renderer.render(tokens, markdown.options, {})
