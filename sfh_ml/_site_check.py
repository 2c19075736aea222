"""Check a rendered HTML book: ``python sfh_ml/_site_check.py HTML_DIR``.

What a reader would trip over, found before they do (``make test-book`` and ``make book`` run it):

* a local link (``<a href>``) to a page or file that is not in the book, or to an anchor
  (``page.html#section``) that the page does not define;
* an image (``<img src>``, including the figures of the chapters) that is missing or empty;
* a stylesheet or script loaded from another host (``<link href>``, ``<script src>`` starting with
  ``http``): the book must read offline, in a workshop room or on a train, mathematics included.

Links to other hosts in ``<a href>`` (papers, documentation) are only counted, not followed: the
build machine has no network. Like ``_book.py`` it imports nothing from ``sfh_ml``.
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["check_site", "main"]

# where a page refers to another file: tag -> attribute
_REFERENCES = {"a": "href", "img": "src", "link": "href", "script": "src", "source": "src"}


class _Page(HTMLParser):
    """The references and the anchor ids of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        attr = _REFERENCES.get(tag)
        if attr and attrs.get(attr):
            self.refs.append((tag, attrs[attr]))


ASSET_DIRS = ("_static", "_sources")  # folders of assets and page sources in a Sphinx build


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def check_site(html_dir):
    """Problems of a rendered book, one line each (empty: none).

    Parameters
    ----------
    html_dir : str or Path
        The HTML folder (``_build/html`` of a Jupyter Book).

    Returns
    -------
    problems : list of str
        ``"PAGE: what is wrong"``, paths relative to ``html_dir``.
    counts : dict
        ``pages``, ``local_links``, ``images``, ``external_links`` checked or seen.
    """
    root = Path(html_dir)
    if not root.is_dir():
        return [f"{root}: no such folder (render the book first)"], {}
    # the theme's _static/*.html are Jinja macros copied as assets, not pages
    pages = sorted(p for p in root.rglob("*.html") if p.relative_to(root).parts[0] not in ASSET_DIRS)
    parsed = {p.resolve(): _parse(p) for p in pages}
    problems = []
    counts = {"pages": len(pages), "local_links": 0, "images": 0, "external_links": 0}
    for path in pages:
        name = path.relative_to(root)
        for tag, ref in parsed[path.resolve()].refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https") or ref.startswith("//"):
                if tag in ("link", "script"):
                    problems.append(
                        f"{name}: <{tag}> loaded from another host, so the page needs a network: {ref}"
                    )
                else:
                    counts["external_links"] += 1
                continue
            if parts.scheme or ref.startswith("#") and tag != "a":
                continue  # mailto:, data:, javascript:
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
            if target.is_dir():
                target = target / "index.html"
            counts["images" if tag == "img" else "local_links"] += 1
            if not target.is_file():
                problems.append(f"{name}: <{tag}> points to {ref}, which is not in the book")
            elif tag == "img" and target.stat().st_size == 0:
                problems.append(f"{name}: the image {ref} is empty")
            elif tag == "a" and parts.fragment and target.suffix == ".html":
                page = parsed.get(target) or _parse(target)
                if unquote(parts.fragment) not in page.ids:
                    problems.append(
                        f"{name}: the link {ref} names an anchor that {target.name} does not define"
                    )
    return problems, counts


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python sfh_ml/_site_check.py HTML_DIR", file=sys.stderr)
        return 2
    problems, counts = check_site(args[0])
    for line in problems:
        print(line, file=sys.stderr)
    if counts:
        print(
            f"{args[0]}: {counts['pages']} pages, {counts['local_links']} local links and "
            f"{counts['images']} images checked, {counts['external_links']} links to other hosts not "
            f"followed; {len(problems)} problems"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
