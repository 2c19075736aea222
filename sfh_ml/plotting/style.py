"""The book's figure style: one width, one style file, one colour cycle."""

import contextlib
from pathlib import Path

__all__ = ["BOOK_WIDTH_IN", "BOOK_STYLE", "use_book_style", "book_style"]

BOOK_WIDTH_IN = 7.0  # content width of the book's pages: 700 px at figure.dpi = 100
BOOK_STYLE = Path(__file__).with_name("book.mplstyle")


def use_book_style():
    """Make the book style the default of every later figure of this session (e.g. in a chapter).

    The figure functions of :mod:`sfh_ml.plotting` do not need it: each draws inside
    :func:`book_style` whatever the session's settings.
    """
    import matplotlib.style

    matplotlib.style.use(BOOK_STYLE)


@contextlib.contextmanager
def book_style():
    """Context manager: the book style for the figures made inside it, the previous settings after.

    All but one: matplotlib's interactive mode stays as it is at the end. IPython activates a
    notebook's inline backend lazily, on the first figure, which is then made inside this context;
    the activation turns interactive mode on, and restoring it to off would keep every later figure
    of the notebook from being shown.

    Returns
    -------
    contextlib.AbstractContextManager
    """
    import matplotlib
    import matplotlib.style

    try:
        with matplotlib.style.context(BOOK_STYLE):
            try:
                yield
            finally:
                interactive = matplotlib.is_interactive()
    finally:
        matplotlib.interactive(interactive)
