"""A local, faithful emulator of the DAP Query API, with synthetic Canvas data.

The official client works against it unchanged (``dap --base-url http://127.0.0.1:PORT``).
It never imports dapframe's client: only the wire models in :mod:`dapframe.wire`.

Examples
--------
>>> from dapframe.emulator import Emulator
>>> with Emulator(seed=0, scale=1) as emu:          # doctest: +SKIP
...     print(emu.base_url, emu.client_id)
"""

from __future__ import annotations

import threading
from datetime import timedelta
from types import TracebackType

from dapframe.emulator._data import Dataset
from dapframe.emulator._faults import Faults
from dapframe.emulator._server import EmulatorState, make_server

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "Dataset", "Emulator", "Faults"]

#: Credentials the emulator accepts when none are given (printed at start; not real secrets).
DEFAULT_CLIENT_ID = "us-east-1#dapframe-emulator"
DEFAULT_CLIENT_SECRET = "emulator-secret"


class Emulator:
    """An emulator serving on a loopback port in a background thread.

    Parameters
    ----------
    seed, scale : int, float
        Synthetic data: same seed and scale give the same data. Scale 1 is small
        (hundreds to a few thousand rows per table); scale 500 gives ~1M submissions.
    client_id, client_secret : str
        The only credentials the login endpoint accepts.
    host, port : str, int
        Where to listen; port 0 picks a free port. Loopback by default.
    steps : int
        Change steps committed at start (the clock advances one step interval each).
    rows_per_part : int
        Rows per result object.
    job_seconds : float
        How long a query job takes (waiting -> running -> complete).
    token_ttl : int
        Lifetime of issued tokens, in seconds.
    latency, object_bandwidth : float
        Network shape for benchmarks: seconds added per API call; bytes/s per download stream.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        scale: float = 1.0,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        steps: int = 0,
        rows_per_part: int = 100_000,
        job_seconds: float = 0.2,
        token_ttl: int = 3600,
        step_interval: timedelta = timedelta(hours=1),
        latency: float = 0.0,
        object_bandwidth: float | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.dataset = Dataset(seed=seed, scale=scale, step_interval=step_interval)
        if steps:
            self.dataset.tick(steps)
        self.faults = Faults(job_seconds=job_seconds, token_ttl=token_ttl, latency=latency,
                             object_bandwidth=object_bandwidth)
        self.state = EmulatorState(self.dataset, client_id=client_id, client_secret=client_secret,
                                   rows_per_part=rows_per_part, faults=self.faults)
        self._server = make_server(self.state, host, port)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Emulator:
        """Serve in a background daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                            name="dapframe-emulator", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def tick(self, steps: int = 1) -> int:
        """Commit ``steps`` change steps; returns the new step number."""
        with self.state.lock:
            return self.dataset.tick(steps)

    def schema_bump(self, namespace: str, table: str) -> int:
        """Publish a new schema version of a table; returns the version."""
        with self.state.lock:
            return self.dataset.schema_bump(namespace, table).version

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self.state.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
