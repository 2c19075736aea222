"""The trained network that ships inside the package: ``sfh_ml/pretrained/``.

The folder holds the model file(s) (``*.keras``; several for a deep ensemble), ``MODEL_CARD.md``
(what the model is, how well it does, what it cannot do; rendered by
:func:`sfh_ml.network.card.render_model_card` from ``results.json``, which ships too) and
``MANIFEST.json``, which lists every shipped file with its SHA-256 digest and size, the models by
name and the default one::

    {
      "manifest_version": 1,
      "default": "v2",
      "models": {"v2": {"members": ["v2_m0.keras", "v2_m1.keras", "v2_m2.keras"]}},
      "files": {"v2_m0.keras": {"sha256": "9f2c...", "size": 2215731}, ...,
                "MODEL_CARD.md": {...}, "results.json": {...}},
      "card": "MODEL_CARD.md",
      "results": "results.json",
      "sfh_ml_version": "0.1.0",
      "created": "2026-05-20T14:03:11Z"
    }

:func:`load_pretrained` checks the digest of every file it reads, so a damaged or replaced file
is refused by name instead of giving silently wrong histories. The release script
(``benchmarks/release_model.py``) writes the folder with :func:`write_manifest`.

Nothing here imports Keras until a model is loaded: the command line reads the manifest to say
which model is its default.
"""

import hashlib
import json
import time
from pathlib import Path

from ..files import atomic_write_text
from ..version import __version__

__all__ = [
    "PRETRAINED_DIR",
    "MANIFEST_NAME",
    "CARD_NAME",
    "RESULTS_NAME",
    "COMPARISONS_NAME",
    "MANIFEST_VERSION",
    "MEMBER_CHOICES",
    "PretrainedError",
    "load_pretrained",
    "pretrained_paths",
    "pretrained_info",
    "pretrained_card",
    "pretrained_results",
    "pretrained_comparisons",
    "comparisons_reference",
    "default_model_label",
    "describe_pretrained",
    "verify_pretrained",
    "write_manifest",
    "file_digest",
]

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"  # package data of sfh_ml
MANIFEST_NAME = "MANIFEST.json"
CARD_NAME = "MODEL_CARD.md"
RESULTS_NAME = "results.json"  # the figures the card is rendered from (see sfh_ml.network.card)
# v1 and the v2 learning curve trained with the shipped network's recipe (benchmarks/release_comparisons.py),
# read by chapter 3 so that the book does not retrain paper-size networks
COMPARISONS_NAME = "comparisons.json"
MANIFEST_VERSION = 1
# "all": every member of an ensemble; "fast": its first member alone (K times faster; the
# uncertainties then lack the spread between members).
MEMBER_CHOICES = ("all", "fast")
REINSTALL = (
    "reinstall sfh_ml (pip install --force-reinstall --no-deps sfh_ml; in a git checkout: "
    "git checkout -- sfh_ml/pretrained)"
)
_CHUNK = 1 << 20  # bytes hashed at a time


class PretrainedError(OSError):
    """The shipped model is absent, or one of its files is missing, damaged or replaced."""


def file_digest(path):
    """SHA-256 of a file, hex (64 characters)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder():
    return Path(PRETRAINED_DIR)


def _read_manifest():
    """The manifest of the shipped folder as a dict; PretrainedError if there is none or it is unreadable."""
    path = _folder() / MANIFEST_NAME
    if not path.is_file():
        raise PretrainedError(
            f"no pretrained model ships with this installation of sfh_ml (no {path}): pass a model of "
            "your own (--model PATH; train one with `sfh-ml train`), or install a release of sfh_ml "
            "that includes one"
        )
    try:
        manifest = json.loads(path.read_text())
        version = manifest["manifest_version"]
        manifest["models"][manifest["default"]]["members"]
        manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PretrainedError(
            f"the manifest {path} is damaged ({type(err).__name__}: {err}): {REINSTALL}"
        ) from None
    if version != MANIFEST_VERSION:
        raise PretrainedError(
            f"the manifest {path} has version {version!r}, this sfh_ml reads version {MANIFEST_VERSION}: "
            f"{REINSTALL}"
        )
    return manifest


def _model_entry(manifest, name):
    """(name, entry) of the model ``name`` (None: the default); ValueError naming the shipped ones."""
    name = manifest["default"] if name is None else name
    if name not in manifest["models"]:
        raise ValueError(
            f"no pretrained model named {name!r}; this installation ships {sorted(manifest['models'])} "
            f"(default {manifest['default']!r})"
        )
    return name, manifest["models"][name]


def _verified(manifest, filename):
    """The path of a shipped file after checking its size and SHA-256 against the manifest."""
    folder = _folder()
    path = folder / filename
    expected = manifest["files"].get(filename)
    if expected is None:
        raise PretrainedError(
            f"{folder / MANIFEST_NAME} uses {filename} but lists no digest for it: {REINSTALL}"
        )
    if not path.is_file():
        raise PretrainedError(
            f"the pretrained model file {path} is missing (the manifest lists it): the installation is "
            f"incomplete; {REINSTALL}"
        )
    size = path.stat().st_size
    digest = file_digest(path) if size == expected["size"] else None
    if size != expected["size"] or digest != expected["sha256"]:
        found = f"{size} bytes" if digest is None else f"sha256 {digest[:16]}..."
        wanted = f"{expected['size']} bytes" if digest is None else f"sha256 {expected['sha256'][:16]}..."
        raise PretrainedError(
            f"the pretrained model file {path} does not match its manifest ({found}, expected {wanted}): "
            f"it is damaged or was replaced; {REINSTALL}"
        )
    return path


def pretrained_paths(name=None, members="all"):
    """The files of a shipped model, each checked against its digest.

    Parameters
    ----------
    name : str, optional
        A model of the manifest (default: its ``default``).
    members : {"all", "fast"}
        ``"all"``: every member of an ensemble; ``"fast"``: the first member only.

    Returns
    -------
    list of Path
        One path per member (a single one for a single network or ``members="fast"``).

    Raises
    ------
    PretrainedError
        No model ships with this installation, or a file is missing or fails its digest check.
    ValueError
        Unknown ``name`` or ``members``.
    """
    if members not in MEMBER_CHOICES:
        raise ValueError(f"members must be one of {MEMBER_CHOICES}, got {members!r}")
    manifest = _read_manifest()
    _, entry = _model_entry(manifest, name)
    files = entry["members"] if members == "all" else entry["members"][:1]
    return [_verified(manifest, f) for f in files]


def load_pretrained(name=None, members="all"):
    """The network that ships with sfh_ml, ready for :func:`sfh_ml.predict`.

    Every file is checked against the SHA-256 digest of ``MANIFEST.json`` before it is loaded.

    Parameters
    ----------
    name : str, optional
        A model of the manifest (default: the default model; ``sfh-ml info --pretrained`` lists them).
    members : {"all", "fast"}
        For an ensemble: ``"all"`` members (the ensemble's mean and its spread in the
        uncertainties), or ``"fast"``, the first member alone (as many times faster as there are
        members). A single network is the same either way.

    Returns
    -------
    keras.Model or list of keras.Model
        One network, or the members of an ensemble (a list, which :func:`sfh_ml.predict`,
        :func:`sfh_ml.evaluate` and :func:`sfh_ml.predict_file` accept as they accept one model).

    Raises
    ------
    PretrainedError
        No model ships with this installation, or a file is missing, damaged or replaced (the
        message names it; reinstalling sfh_ml repairs it).
    ValueError
        Unknown ``name`` or ``members``.

    Examples
    --------
    >>> import sfh_ml
    >>> model = sfh_ml.load_pretrained()  # doctest: +SKIP
    >>> pred = sfh_ml.predict(model, spectra, photometry, wave_aa=wave_aa)  # doctest: +SKIP
    """
    from .inference import load_model  # starts Keras

    models = [load_model(path) for path in pretrained_paths(name, members)]
    return models[0] if len(models) == 1 else models


def pretrained_info(name=None):
    """What ships: the manifest's record of a model, without loading it or checking digests.

    Parameters
    ----------
    name : str, optional
        A model of the manifest (default: the default model).

    Returns
    -------
    dict
        ``name``; ``default`` (bool: is it the default model); ``members`` (file names);
        ``files`` (``{file name: {"sha256", "size", "path"}}`` for the members); ``card`` and
        ``results`` (Path of ``MODEL_CARD.md`` and ``results.json``, or None if none ships);
        ``folder`` (Path); ``models`` (names of every shipped model); ``sfh_ml_version`` and
        ``created`` (when the manifest was written, ISO 8601 UTC).

    Raises
    ------
    PretrainedError
        No model ships with this installation, or the manifest is damaged.
    """
    manifest = _read_manifest()
    name, entry = _model_entry(manifest, name)
    folder = _folder()
    optional = lambda key: folder / manifest[key] if manifest.get(key) else None
    return {
        "name": name,
        "default": name == manifest["default"],
        "members": list(entry["members"]),
        "files": {f: {**manifest["files"].get(f, {}), "path": folder / f} for f in entry["members"]},
        "card": optional("card"),
        "results": optional("results"),
        "folder": folder,
        "models": sorted(manifest["models"]),
        "sfh_ml_version": manifest.get("sfh_ml_version"),
        "created": manifest.get("created"),
    }


def pretrained_card():
    """The text of the shipped model card (Markdown), checked against its digest.

    Raises
    ------
    PretrainedError
        No model (or no card) ships, or the card is missing or fails its digest check.
    """
    manifest = _read_manifest()
    if not manifest.get("card"):
        raise PretrainedError(f"{_folder() / MANIFEST_NAME} lists no model card: {REINSTALL}")
    return _verified(manifest, manifest["card"]).read_text()


def _shipped_json(key, filename):
    """A JSON file of the shipped folder, checked against the manifest's digest."""
    manifest = _read_manifest()
    name = manifest.get(key) or (filename if filename in manifest["files"] else None)
    if not name:
        raise PretrainedError(f"{_folder() / MANIFEST_NAME} lists no {filename}: {REINSTALL}")
    return json.loads(_verified(manifest, name).read_text())


def pretrained_results():
    """The figures of the shipped model card (``results.json``, schema :mod:`sfh_ml.network.card`).

    Returns
    -------
    dict
        ``model``, ``training``, ``metrics`` (one row per test set), ``coverage``, ``speed``, and
        where the release measured them ``valley``, ``zh_prior`` and ``ablation``.

    Raises
    ------
    PretrainedError
        No model (or no results file) ships, or the file fails its digest check.
    """
    return _shipped_json("results", RESULTS_NAME)


def comparisons_reference(comparisons, results):
    """The network the release's comparisons were trained beside (their recipe's full-size v2).

    Parameters
    ----------
    comparisons : dict
        :func:`pretrained_comparisons`; its ``reference`` is ``{"name", "n_train", "epochs_run",
        "metrics", "ablation"}`` (``benchmarks/release_comparisons.py``), kept when a later release
        with another recipe carries the file on.
    results : dict
        :func:`pretrained_results`: the shipped network, taken as the reference where the
        comparisons carry none (they were then made for it).

    Returns
    -------
    dict
        ``name``, ``n_train``, ``metrics`` (rows like ``results["metrics"]``) and ``ablation``
        (``results["ablation"]``'s form, or None).
    """
    ref = comparisons.get("reference")
    if ref is not None:
        return ref
    return {
        "name": results.get("name"),
        "n_train": results["training"]["n_train"],
        "epochs_run": results["training"].get("epochs_run"),
        "metrics": results["metrics"],
        "ablation": results.get("ablation"),
    }


def pretrained_comparisons():
    """The comparison networks of the release: v1 and the v2 learning curve, with the shipped recipe.

    Written by ``benchmarks/release_comparisons.py``: each network trained on (a subset of) the
    shipped network's training set with its epochs, batch, learning rate and seed, then evaluated on
    the release's held-out test sets.

    Returns
    -------
    dict
        ``recipe`` (the training options), ``test_sets`` (label, n, seed, S/N), ``networks``
        (``{name: {"version", "n_train", "epochs_run", "best_epoch", "seconds", "history",
        "metrics"}}``, metrics rows as in ``results.json``) and ``created``.

    Raises
    ------
    PretrainedError
        The installation ships no comparisons file, or it fails its digest check.
    """
    return _shipped_json("comparisons", COMPARISONS_NAME)


def verify_pretrained():
    """Check every file the manifest lists; returns one line per problem (empty: all good).

    Unlike :func:`load_pretrained` it does not stop at the first problem, so that
    ``sfh-ml info --pretrained`` can report them all.
    """
    manifest = _read_manifest()
    problems = []
    for filename in manifest["files"]:
        try:
            _verified(manifest, filename)
        except PretrainedError as err:
            problems.append(str(err))
    return problems


def default_model_label():
    """A short description of the default shipped model, for ``--help`` (never raises).

    Returns
    -------
    str
        E.g. ``"the pretrained model 'v2' shipped with sfh_ml (an ensemble of 3 networks)"``, or a
        sentence saying that none ships.
    """
    try:
        manifest = _read_manifest()
    except PretrainedError:
        return "the pretrained model shipped with sfh_ml; none ships with this installation"
    name = manifest["default"]
    n = len(manifest["models"][name]["members"])
    kind = "one network" if n == 1 else f"an ensemble of {n} networks"
    return f"the pretrained model {name!r} shipped with sfh_ml ({kind}; see `sfh-ml info --pretrained`)"


def describe_pretrained():
    """Text for ``sfh-ml info --pretrained``: the manifest, the digest check and the card's summary.

    Raises
    ------
    PretrainedError
        No model ships with this installation, or the manifest is damaged.
    """
    from .card import card_summary

    manifest = _read_manifest()
    folder = _folder()
    lines = [
        f"pretrained models in {folder} (manifest written {manifest.get('created')} by sfh_ml "
        f"{manifest.get('sfh_ml_version')})"
    ]
    for name, entry in sorted(manifest["models"].items()):
        default = " (default)" if name == manifest["default"] else ""
        lines.append(f"  {name}{default}: {len(entry['members'])} member(s): {', '.join(entry['members'])}")
    lines.append("files:")
    for filename, record in sorted(manifest["files"].items()):
        lines.append(f"  {filename:24s} {record['size'] / 1e6:8.2f} MB  sha256 {record['sha256']}")
    problems = verify_pretrained()
    lines += [f"  PROBLEM: {p}" for p in problems] or ["  every file matches its digest"]
    card = folder / manifest["card"] if manifest.get("card") else None
    if card is not None and card.is_file():
        lines += [f"model card: {card}", "", card_summary(card.read_text())]
    return "\n".join(lines)


def write_manifest(folder, default, members=None):
    """Write ``MANIFEST.json`` for the model files of a folder (the release script's last step).

    Every ``*.keras`` file of ``folder`` is listed with its SHA-256 digest and size, and so are
    ``MODEL_CARD.md`` and ``results.json`` if present. The model ``default`` is made of
    ``members``; every other ``*.keras`` file is a single-network model named by its stem.

    Parameters
    ----------
    folder : str or Path
        The folder of the shipped files (``sfh_ml/pretrained`` or a staging copy of it).
    default : str
        Name of the default model.
    members : sequence of str, optional
        File names (in ``folder``) of the members of ``default``, the first being the ``"fast"``
        one; default ``[default + ".keras"]``.

    Returns
    -------
    dict
        The manifest written (atomically) to ``folder/MANIFEST.json``.

    Raises
    ------
    FileNotFoundError
        A member is not a file of ``folder``.
    ValueError
        No members, or a member that is not a ``.keras`` file.
    """
    folder = Path(folder)
    members = [f"{default}.keras"] if members is None else [str(m) for m in members]
    if not members:
        raise ValueError(f"the model {default!r} needs at least one member file")
    for m in members:
        if Path(m).name != m or not m.endswith(".keras"):
            raise ValueError(f"members are .keras file names inside {folder}, got {m!r}")
        if not (folder / m).is_file():
            raise FileNotFoundError(f"no member file {folder / m}: write the model files before the manifest")
    models = {default: {"members": members}}
    for path in sorted(folder.glob("*.keras")):
        if path.name not in members:
            models.setdefault(path.stem, {"members": [path.name]})
    listed = sorted(p.name for p in folder.glob("*.keras"))
    listed += [n for n in (CARD_NAME, RESULTS_NAME, COMPARISONS_NAME) if (folder / n).is_file()]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "default": default,
        "models": models,
        "files": {
            n: {"sha256": file_digest(folder / n), "size": (folder / n).stat().st_size} for n in listed
        },
        "card": CARD_NAME if (folder / CARD_NAME).is_file() else None,
        "results": RESULTS_NAME if (folder / RESULTS_NAME).is_file() else None,
        "comparisons": COMPARISONS_NAME if (folder / COMPARISONS_NAME).is_file() else None,
        "sfh_ml_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return manifest
