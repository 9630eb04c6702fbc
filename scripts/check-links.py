#!/usr/bin/env python3
"""Check the local links of the built book and of Markdown files.

    python3 scripts/check-links.py docs/book [README.md ...]

In every .html file under the book: each href/src that is not an external URL
(scheme or //) must name an existing file (404.html aside: its links are
meant for any depth), and a #fragment an element id in it.
In each Markdown file given: each relative link target must exist (fragments
are not checked there). Prints every broken link; exit status 1 if any.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value)
            elif name in ("id", "name"):
                self.ids.add(value)


def parse(path: Path, cache: dict[Path, Page]) -> Page:
    if path not in cache:
        page = Page()
        page.feed(path.read_text(errors="replace"))
        cache[path] = page
    return cache[path]


def local(link: str) -> bool:
    parts = urlsplit(link)
    return not (parts.scheme or parts.netloc or link.startswith("//"))


def check_book(book: Path) -> list[str]:
    broken, cache = [], {}
    for html in sorted(book.rglob("*.html")):
        if html.name == "404.html":
            continue  # served for any missing path, so its links are root-absolute
        for link in parse(html, cache).links:
            if not local(link):
                continue
            parts = urlsplit(link)
            target = html if not parts.path else (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{html.relative_to(book)}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in parse(target, cache).ids:
                    broken.append(f"{html.relative_to(book)}: {link} (no such anchor)")
    return broken


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def check_markdown(md: Path) -> list[str]:
    broken, fence = [], False
    for n, line in enumerate(md.read_text().splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        for link in LINK.findall(line):
            if not local(link) or link.startswith("#"):
                continue
            path = urlsplit(link).path
            # ../shared/DESIGN.md is beside the repository, not in it.
            if path.startswith("../shared/"):
                continue
            if not (md.parent / unquote(path)).exists():
                broken.append(f"{md}:{n}: {link} (no such file)")
    return broken


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    book = Path(sys.argv[1])
    if not (book / "index.html").exists():
        print(f"{book}: no built book (index.html missing)", file=sys.stderr)
        return 1
    broken = check_book(book)
    for md in sys.argv[2:]:
        broken += check_markdown(Path(md))
    for b in broken:
        print(f"broken link: {b}", file=sys.stderr)
    pages = len(list(book.rglob("*.html")))
    print(f"check-links: {pages} pages, {len(sys.argv) - 2} Markdown files, {len(broken)} broken links",
          file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
