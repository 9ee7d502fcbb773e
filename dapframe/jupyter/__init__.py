"""The notebook face of dapframe: ``%dap`` magics, a login form and download progress bars.

``%load_ext dapframe`` registers the magics (see :mod:`dapframe.jupyter._magics` for the
commands)::

    %dap emulator                          # or %dap login, or DAP_* / a .env file
    %dap tables canvas
    accounts << %dap snapshot canvas.accounts
    %dap incremental canvas.accounts       # goes on from the snapshot's watermark
    %config Dap.output = "eager"           # bind DataFrames instead of LazyFrames

Needs the ``notebook`` extra (IPython, ipywidgets, Polars, DuckDB).
"""

from __future__ import annotations

from typing import Any

from ._display import DapResult, Message, SchemaView, SyncView, TableList
from ._dotenv import read_dotenv
from ._magics import Dap, bind_transformer, parse_timestamp
from ._session import Credentials, DapSession
from ._widgets import DownloadBar, LoginForm, LoginOutcome

__all__ = [
    "Credentials",
    "Dap",
    "DapResult",
    "DapSession",
    "DownloadBar",
    "LoginForm",
    "LoginOutcome",
    "Message",
    "SchemaView",
    "SyncView",
    "TableList",
    "bind_transformer",
    "load_ipython_extension",
    "parse_timestamp",
    "read_dotenv",
    "unload_ipython_extension",
]

_LOADED = "_dapframe_magics"


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%dap`` magics, their ``%config Dap`` options and ``NAME << %dap``.

    Loading twice keeps the first registration (and its session).
    """
    if getattr(ipython, _LOADED, None) is not None:
        return
    # Magics.__init__ adds itself to shell.configurables (what %config lists and updates) and
    # takes the shell's config (c.Dap.* in ipython_config.py).
    magics = Dap(shell=ipython)
    ipython.register_magics(magics)
    if bind_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(bind_transformer)
    setattr(ipython, _LOADED, magics)


def unload_ipython_extension(ipython: Any) -> None:
    """Close the session (client, emulator, DuckDB files) and drop ``NAME << %dap``."""
    magics = getattr(ipython, _LOADED, None)
    if magics is None:
        return
    magics.close()
    if bind_transformer in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(bind_transformer)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    ipython.magics_manager.magics["line"].pop("dap", None)
    ipython.magics_manager.magics["cell"].pop("dap", None)
    setattr(ipython, _LOADED, None)
