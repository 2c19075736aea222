"""Tests of sfh_ml._site_check, the check of the rendered book's links, images and offline assets."""

from sfh_ml._site_check import check_site


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _book(tmp_path, page_body):
    _write(tmp_path / "_static" / "fig.png", "png bytes")
    # a theme's Jinja macros, copied into _static as they are: an asset, not a page
    _write(tmp_path / "_static" / "macros.html", "<link href=\"{{ pathto('_static/x.css', 1) }}\">")
    _write(tmp_path / "book" / "other.html", '<html><body><h2 id="results">Results</h2></body></html>')
    _write(tmp_path / "book" / "page.html", f"<html><body>{page_body}</body></html>")
    return tmp_path


def test_a_sound_book_has_no_problems(tmp_path):
    body = (
        '<a href="other.html#results">x</a> <a href="#top" id="top">top</a> '
        '<img src="../_static/fig.png"> <a href="https://arxiv.org/abs/2605.13973">paper</a> '
        '<script src="../_static/fig.png"></script> <a href="mailto:a@b.c">mail</a>'
    )
    problems, counts = check_site(_book(tmp_path, body))
    assert problems == []
    assert counts == {"pages": 2, "local_links": 3, "images": 1, "external_links": 1}


def test_each_kind_of_breakage_is_named(tmp_path):
    body = (
        '<a href="missing.html">a</a> <a href="other.html#nowhere">b</a> '
        '<img src="../_static/none.png"> <img src="../_static/empty.png"> '
        '<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>'
    )
    root = _book(tmp_path, body)
    _write(root / "_static" / "empty.png", "")
    problems, _ = check_site(root)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "missing.html, which is not in the book" in text
    assert "other.html#nowhere names an anchor" in text
    assert "none.png, which is not in the book" in text
    assert "the image ../_static/empty.png is empty" in text
    assert "<script> loaded from another host" in text
    assert all(p.startswith("book/page.html: ") for p in problems)


def test_a_missing_folder_is_one_problem(tmp_path):
    problems, counts = check_site(tmp_path / "not-rendered")
    assert len(problems) == 1 and "render the book first" in problems[0] and counts == {}
