"""Optuna storage for one or many workers: heartbeats, one-line connection errors, a claim lock.

Workers share a study through an RDB storage (SQLite for one machine, PostgreSQL across machines).
Every worker writes a heartbeat for its running trial; a trial whose heartbeat is older than the
grace period belongs to a dead worker (SIGKILL, power loss) and is failed by the next worker that
looks (optuna's `fail_stale_trials`), which re-enqueues its profile once (`requeue_lost`).

`ClaimLock` serialises the few milliseconds in which a worker counts the study's trials and claims a
new one, so that N workers with `--budget B` finish exactly B trials and enqueue the seeds once:
a PostgreSQL advisory lock, a file lock beside an SQLite database, nothing for other back ends.
"""

from __future__ import annotations

import inspect
import random
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.trial_profile import LEGACY, SEED_PROFILE

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats of a running trial
GRACE_PERIOD = 30  # seconds without a heartbeat after which a running trial is failed as lost

_DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL", "mysqldb": "mysqlclient"}


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def normalize_url(url: str) -> str:
    """`postgresql://` (and `postgres://`) -> `postgresql+psycopg://`: psycopg 3 is the driver this
    package depends on, whatever SQLAlchemy's default for the bare scheme is (psycopg2 before 2.1)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def backend(url: str) -> str:
    """'sqlite', 'postgresql', 'mysql', ... (the URL scheme without its driver)."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def _check_driver(url: str) -> None:
    scheme = url.split(":", 1)[0].lower()
    if "+" not in scheme:
        return
    driver = scheme.split("+", 1)[1]
    if driver in _DRIVERS:
        import importlib

        try:
            importlib.import_module(driver)
        except ImportError:
            raise UserError(f"storage {redact(url)} needs the {driver} driver: pip install '{_DRIVERS[driver]}'") from None


def _one_line(exc: BaseException) -> str:
    """The driver's own message, first meaningful line, without SQLAlchemy's wrapping."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    orig = getattr(orig, "orig", None) or orig  # optuna's StorageInternalError wraps SQLAlchemy's error
    text = str(orig).strip() or type(orig).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("(Background")]
    msg = " ".join(lines[:2]) if lines else text
    for prefix in ("connection failed: ", "(psycopg.OperationalError) ", "(psycopg2.OperationalError) "):
        msg = msg.replace(prefix, "")
    return msg[:300]


def _hint(msg: str) -> str:
    low = msg.lower()
    if "is the server running" in low:
        return ""
    if "password authentication failed" in low or "no password supplied" in low:
        return " (check the user and password in the URL)"
    if "does not exist" in low and "database" in low:
        return " (create it first, e.g. `createdb -O USER DB` on the server)"
    if "connection refused" in low or "timeout" in low or "could not translate host name" in low \
            or "name or service not known" in low:
        return " (is the server running and reachable at that host and port?)"
    return ""


def requeue_lost(study: optuna.Study, trial: FrozenTrial) -> None:
    """Called when a dead worker's trial is failed: run its profile again, once (not a retry of a retry)."""
    if "retry_of" in trial.user_attrs:
        return
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    keep = {k: trial.user_attrs[k] for k in ("seed", SEED_PROFILE, LEGACY[SEED_PROFILE]) if k in trial.user_attrs}
    study.enqueue_trial(params, user_attrs={**keep, "retry_of": trial.number})


def storage_cause(exc: Optional[BaseException]) -> Optional[BaseException]:
    """The database failure (a connection dropped, the server restarting) behind `exc`: `exc` itself,
    or an exception it was raised from or while handling (optuna can raise a secondary error of its
    own, e.g. an UnboundLocalError after a failed tell, whose context is the real one); else None."""
    import sqlalchemy.exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                            sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError)):
            return exc
        if type(exc).__module__.split(".")[0] in ("psycopg", "psycopg2") and "Operational" in type(exc).__name__:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def is_storage_error(exc: Optional[BaseException]) -> bool:
    return storage_cause(exc) is not None


def storage_error_line(exc: BaseException) -> str:
    """The database's own message behind `exc`, in one line."""
    return _one_line(storage_cause(exc) or exc)


def reachable(storage: Any) -> bool:
    """One round trip to the database (a dead pooled connection is replaced: pool_pre_ping)."""
    from sqlalchemy import text

    try:
        with rdb_of(storage).engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means: not now
        return False


def raise_if_storage_lost(exc: BaseException, url: str) -> None:
    """Raise a one-line UserError if `exc` is the database going away in the middle of a run."""
    import sqlalchemy.exc

    if isinstance(exc, (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                        sqlalchemy.exc.InterfaceError)):
        raise UserError(f"lost the storage {redact(url)} during the search: {_one_line(exc)} "
                        "(finished trials are kept there; rerun the same command to continue)") from None


def open_storage(url: str, heartbeat_interval: Optional[int] = HEARTBEAT_INTERVAL,
                 grace_period: Optional[int] = GRACE_PERIOD) -> optuna.storages.RDBStorage:
    """An RDBStorage with heartbeats, or a UserError of one line (unreachable, refused, no database...)."""
    import sqlalchemy.exc

    shown, url = redact(url), normalize_url(url)
    if "://" not in url:
        raise UserError(f"--storage must be a database URL (sqlite:///path.db, postgresql://user:pw@host/db), not {url!r}")
    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise UserError(f"--heartbeat-interval must be at least 1 second, not {heartbeat_interval}")
    if grace_period is not None and heartbeat_interval is not None and grace_period <= heartbeat_interval:
        raise UserError(f"--grace-period ({grace_period} s) must be longer than --heartbeat-interval ({heartbeat_interval} s)")
    _check_driver(url)
    kwargs: dict[str, Any] = {}
    if backend(url) == "postgresql":
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    if heartbeat_interval is not None:
        kwargs["heartbeat_interval"] = heartbeat_interval
        kwargs["grace_period"] = grace_period
        params = inspect.signature(optuna.storages.RDBStorage).parameters
        cb_name = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
        kwargs[cb_name] = requeue_lost
    try:
        for attempt in range(4):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
                    return _ResilientRDBStorage(url, **kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers started together on an empty database race to create optuna's tables
                if attempt == 3:
                    raise
                time.sleep(0.5 + random.random())
        raise AssertionError("unreachable")
    except ImportError as exc:
        raise UserError(f"storage {shown}: database driver missing ({exc}); for PostgreSQL: "
                        "pip install 'psycopg[binary]'") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        msg = _one_line(exc)
        raise UserError(f"cannot open storage {shown}: {msg}{_hint(msg)}") from None
    except (RuntimeError, ValueError) as exc:  # e.g. schema version of another optuna
        raise UserError(f"cannot open storage {shown}: {_one_line(exc)}") from None


class _ResilientRDBStorage(optuna.storages.RDBStorage):
    """optuna's RDBStorage whose heartbeat survives a database outage: a heartbeat that cannot be
    written is skipped (the next one, an interval later, tries again) instead of killing the trial's
    heartbeat thread with a traceback. An outage longer than the grace period still makes the trial
    stale, as it should: no one can tell a dead worker from an unreachable one."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:  # noqa: BLE001
            if not is_storage_error(exc):
                raise


def rdb_of(storage: Any) -> Any:
    """The RDBStorage behind optuna's cache wrapper (or the storage itself)."""
    return getattr(storage, "_backend", storage)


class StaleCheck:
    """Fails the running trials of dead workers (optuna does it only before each new trial).

    Optuna skips a running trial that has no heartbeat at all: one whose worker died between
    creating it and its first heartbeat (sampling happens in between). Such a trial would hold its
    share of the budget forever, so a trial seen running without a heartbeat for a whole grace
    period (timed on this worker's clock) is failed and re-enqueued too.
    """

    def __init__(self, grace_period: Optional[int]) -> None:
        self.grace = grace_period
        self.first_seen: dict[int, float] = {}

    def __call__(self, study: optuna.Study) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        if self.grace is None:
            return
        now = time.monotonic()
        seen = {tid: self.first_seen.get(tid, now) for tid in _running_without_heartbeat(study)}
        self.first_seen = seen
        for tid, first in seen.items():
            if now - first > self.grace:
                try:
                    if study._storage.set_trial_state_values(tid, state=TrialState.FAIL):
                        requeue_lost(study, study._storage.get_trial(tid))
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass


def _running_heartbeats(study: optuna.Study, server_now: bool = False) -> Optional[tuple[Any, list]]:
    """(the database server's now() if asked, [(trial_id, number, last heartbeat or None)]) for the
    study's RUNNING trials; None when the storage keeps no heartbeats or optuna's internals moved."""
    rdb = rdb_of(study._storage)
    try:
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:  # optuna internals moved: keep only optuna's own checks
        return None
    if not hasattr(rdb, "scoped_session"):
        return None
    with _create_scoped_session(rdb.scoped_session) as session:
        now = session.execute(sqlalchemy.func.now()).scalar() if server_now else None
        rows = (session.query(models.TrialModel.trial_id, models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
                .outerjoin(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study._study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .all())
    return now, rows


def _running_without_heartbeat(study: optuna.Study) -> list[int]:
    got = _running_heartbeats(study)
    return [] if got is None else [tid for tid, _, hb in got[1] if hb is None]


class ClaimLock:
    """Cross-process mutex for one study: acquire() blocks, release() is idempotent."""

    def __init__(self, storage: Any, study_name: str) -> None:
        self.storage = storage = rdb_of(storage)
        self.key = zlib.crc32(f"sparseinfer-dse:{study_name}".encode())
        self.kind = "none"
        self._conn = None
        self._file = None
        url = str(getattr(storage, "url", ""))
        if backend(url) == "postgresql":
            self.kind = "postgresql"
        elif backend(url) == "sqlite":
            from sqlalchemy.engine import make_url

            db = make_url(url).database
            if db and db != ":memory:":
                self.kind = "file"
                self.path = Path(db + ".lock")

    def acquire(self) -> None:
        if self.kind == "postgresql" and self._conn is None:
            from sqlalchemy import text

            conn = self.storage.engine.connect()
            try:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.key})
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        elif self.kind == "file" and self._file is None:
            import fcntl

            try:
                f = open(self.path, "a")
            except OSError:
                return  # read-only folder: no lock, as for other back ends
            fcntl.flock(f, fcntl.LOCK_EX)
            self._file = f

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.commit()  # ends the transaction: the advisory lock goes with it
            except Exception as exc:  # noqa: BLE001
                if not is_storage_error(exc):
                    raise
                # the server went away: the lock went with the session; drop the dead connection
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - a dead connection may fail to close
                    pass
        f, self._file = self._file, None
        if f is not None:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def __enter__(self) -> "ClaimLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def study_counts(study: optuna.Study, trials: Optional[list[FrozenTrial]] = None) -> dict[str, int]:
    """Budget accounting: `counted` are finished trials (COMPLETE, or FAIL from the evaluation
    itself); `lost` are FAIL trials whose worker died or was interrupted (re-enqueued, not counted).
    `trials`: the study's trials when the caller has already read them."""
    out = {"counted": 0, "complete": 0, "failed": 0, "lost": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        if t.state == TrialState.COMPLETE:
            out["complete"] += 1
            out["counted"] += 1
        elif t.state == TrialState.FAIL:
            if is_lost(t):
                out["lost"] += 1
            else:
                out["failed"] += 1
                out["counted"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
    return out


def is_lost(t: FrozenTrial) -> bool:
    """A FAIL trial that the evaluation did not fail: its worker was killed (stale heartbeat) or interrupted."""
    return t.state == TrialState.FAIL and "fail_reason" not in t.user_attrs


def heartbeat_ages(study: optuna.Study) -> dict[int, float]:
    """Seconds since the last heartbeat of each running trial that has one (trial number -> age),
    by the database server's clock; empty if the storage keeps no heartbeats."""
    got = _running_heartbeats(study, server_now=True)
    if got is None or got[0] is None:
        return {}
    now = got[0].replace(tzinfo=None)
    return {int(n): max((now - hb.replace(tzinfo=None)).total_seconds(), 0.0) for _, n, hb in got[1] if hb is not None}
