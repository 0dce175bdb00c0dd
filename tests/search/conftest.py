"""A throwaway PostgreSQL server on loopback for the distributed-search tests (see pg_server.py).

Started from Debian's binaries, which .ci/run installs under CI=true (`apt-get install postgresql`).
Skipped only outside CI when the binaries are absent; under CI=true their absence fails the tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pg_server import ServerError, pg_bindir, throwaway_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """A running PostgreSQL server with user `dse` (password auth) owning database `dse`."""
    bindir = pg_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing under CI: .ci/run must install Debian's postgresql")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql); CI installs them")
    try:
        with throwaway_server(bindir) as server:
            yield server
    except ServerError as exc:
        pytest.fail(str(exc))
