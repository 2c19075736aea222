"""Names of a package loaded on first use, from one table.

``import sfh_ml`` must not start Keras (the data commands, the synthesis and the pure-numpy metrics
do without it), so packages whose names live in heavy submodules declare them in a table and hand
it to :func:`lazy_exports`; the submodule is imported when one of its names is first used.
"""

import importlib
import sys

__all__ = ["lazy_exports"]


def lazy_exports(package, table):
    """``__getattr__`` and ``__dir__`` for a package (PEP 562) whose names load on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    table : dict of str to str
        Public name -> the module that defines it, relative to the package (``".network"``,
        ``".inference"``). A name equal to its module's last component (``"metrics": ".metrics"``)
        is that module itself.

    Returns
    -------
    __getattr__, __dir__ : callable
        To be assigned at the package's top level. A loaded name is cached in the package.
    """

    def __getattr__(name):
        try:
            where = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module = importlib.import_module(where, package)
        value = module if where.rpartition(".")[2] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
