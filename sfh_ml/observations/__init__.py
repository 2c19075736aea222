"""Part 4 of the book: real observations (PHANGS-MUSE cubes, PHANGS-HST catalogues and images).

Readers of the real file formats, spatial binning and the application of a trained network live
here; see the application chapter.
"""

__all__ = []
