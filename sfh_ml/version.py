"""The package's version (read by the packaging metadata, written into every file sfh_ml makes)."""

__version__ = "0.1.0"
