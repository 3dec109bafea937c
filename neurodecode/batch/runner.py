"""Run the steps over every recording of a dataset on dask.distributed, resumably.

The coordinator (this process) discovers recordings, hashes their content, and checks the
on-disk manifests; only recordings with a step that is missing or stale become Dask tasks.
A task loads, processes and writes one recording and returns a few small status rows, never
arrays. Resume state lives on disk (manifests written after outputs), never in the scheduler,
so a coordinator killed with SIGKILL loses nothing that was finished.
"""

import contextlib
import csv
import io
import json
import logging
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..utils import NeurodecodeError, UsageError, atomic_path, config_hash, sha256_file
from . import cache
from .config import load_config
from .discover import Recording, discover
from .steps import RUNNERS, STEP_VERSION, StepContext, datatype_of, open_raw, resolve_config

STATUS_CSV = "batch_status.csv"
STATUS_JSON = "batch_status.json"
LOCK_NAME = ".neurodecode-batch.lock"
COLUMNS = ("file", "step", "status", "method", "duration_s", "cpu_s", "n_warnings", "warnings", "error_class",
           "error_message", "outputs", "output_sha256", "cache_key", "peak_rss_mb", "worker")


def _version():
    from .. import __version__

    return __version__


@dataclass
class BatchResult:
    """What a batch run did.

    Attributes
    ----------
    rows : list of dict
        One row per (recording, step), in the order of :data:`COLUMNS`.
    exit_code : int
        0 when every step succeeded (or was cached), 1 when any failed.
    summary : dict
        Counts, wall time, configuration hash, paths of the status tables.
    """

    rows: list = field(default_factory=list)
    exit_code: int = 0
    summary: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- planning


def _upstream_hash(step, steps, manifests, in_hash):
    """What a step's cache key depends on besides its own configuration."""
    if step == "clean" or (step == "qc" and "clean" not in steps):
        return in_hash
    if step == "qc":
        return next(iter(manifests["clean"]["outputs"].values()))
    chain = [(s, manifests[s]["key"], manifests[s]["outputs"]) for s in steps]
    return config_hash({"input": in_hash, "chain": chain}, n=64)


def plan_recording(rec, in_hash, cfg, deriv, version):
    """Walk the step chain of one recording while it is cached.

    Returns
    -------
    done : dict
        Verified manifests of the cached prefix of the chain, by step.
    todo : list of str
        The steps (in order) that must run; empty when everything is cached.
    """
    steps = cfg["steps"]
    done = {}
    for i, step in enumerate(steps + ["report"]):
        conf = resolve_config(step, cfg)
        key = cache.step_key(step, STEP_VERSION[step], conf, _upstream_hash(step, steps, done, in_hash), version)
        man = cache.read_manifest(deriv, rec.uid, step)
        if not cache.verify(deriv, man, key):
            return done, (steps + ["report"])[i:]
        done[step] = man
    return done, []


def _row(rec, step, status, *, method="", duration=0.0, cpu=0.0, warnings=(), error=None, outputs=None, key="",
         rss=None, worker=""):
    outputs = outputs or {}
    return {
        "file": rec.relpath, "step": step, "status": status, "method": method,
        "duration_s": round(float(duration), 3), "cpu_s": round(float(cpu), 3), "n_warnings": len(warnings), "warnings": list(warnings),
        "error_class": type(error).__name__ if isinstance(error, BaseException) else (error[0] if error else ""),
        "error_message": str(error) if isinstance(error, BaseException) else (error[1] if error else ""),
        "outputs": list(outputs), "output_sha256": list(outputs.values()), "cache_key": key,
        "peak_rss_mb": rss, "worker": worker,
    }


def _cached_row(rec, step, man):
    return _row(rec, step, "cached", method=man.get("config", {}).get("method", ""), warnings=man.get("warnings", []),
                outputs=man["outputs"], key=man["key"])


# --------------------------------------------------------------------------- the task


_PINNED = []


def _pin_threads():
    """One BLAS/OpenMP thread per worker: N workers on N cores must not oversubscribe."""
    if not _PINNED:
        from threadpoolctl import threadpool_limits

        _PINNED.append(threadpool_limits(limits=1))
        if "torch" in sys.modules:  # only when a step already imported it; importing torch costs ~0.5 GB
            sys.modules["torch"].set_num_threads(1)


def _fault_injection(rec):
    """Test hooks (environment of the workers): make the worker die on one file.

    ``NEURODECODE_BATCH_FAULT=crash:<name>``: the worker process exits at once (as on a segfault).
    ``NEURODECODE_BATCH_FAULT=alloc:<name>``: it allocates memory until the nanny's memory limit
    terminates it (gives up with MemoryError after 2 GB, so a broken limit cannot hang a test).
    """
    spec = os.environ.get("NEURODECODE_BATCH_FAULT", "")
    kind, _, name = spec.partition(":")
    if not name or Path(rec.path).name != name:
        return
    if kind == "crash":
        os._exit(13)
    if kind == "alloc":
        import numpy as np

        hog = []
        for _ in range(100):
            hog.append(np.ones(20 * 2**20 // 8))  # 20 MB, touched
            time.sleep(0.05)
        raise MemoryError(f"{name}: allocated 2 GB without being stopped by the memory limit")


def _warm_up():
    """Import what every step needs, on every worker at once, before the first file arrives."""
    _pin_threads()
    import mne  # noqa: F401
    import scipy.signal  # noqa: F401

    from .. import io  # noqa: F401
    from . import report_html, streaming  # noqa: F401


def _peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def process_recording(rec_dict, in_hash, cfg, deriv, version):
    """Run every stale step of one recording; return its status rows (runs on a worker).

    Exceptions inside a step become a ``failed`` row for that step and ``skipped`` rows for
    the steps after it; only a dying worker surfaces as a task error in the coordinator.
    """
    _pin_threads()
    rec = Recording(**rec_dict)
    _fault_injection(rec)
    deriv = Path(deriv)
    steps = cfg["steps"]
    worker = _worker_name()
    done, todo = plan_recording(rec, in_hash, cfg, deriv, version)
    rows = [_cached_row(rec, s, m) for s, m in done.items()]
    datatype = rec.datatype or next((m.get("datatype") for m in done.values() if m.get("datatype")), None)
    failed = None
    for step in todo:
        conf = resolve_config(step, cfg)
        if failed:
            rows.append(_row(rec, step, "skipped", method=conf.get("method", ""),
                             error=("Skipped", f"step {failed!r} failed on this file"), worker=worker))
            continue
        key = cache.step_key(step, STEP_VERSION[step], conf, _upstream_hash(step, steps, done, in_hash), version)
        man = cache.read_manifest(deriv, rec.uid, step)
        if cache.verify(deriv, man, key):  # e.g. qc after a clean redone with identical bytes
            rows.append(_cached_row(rec, step, man))
            done[step] = man
            continue
        warnings = []
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            if datatype is None:
                datatype = datatype_of(open_raw(rec.path, warnings))
            sub = [f"sub-{rec.entities['subject']}"] + ([f"ses-{rec.entities['session']}"] if rec.entities.get("session") else [])
            out_dir = deriv.joinpath(*sub, datatype)
            out_dir.mkdir(parents=True, exist_ok=True)
            source = rec.path
            if step == "qc" and "clean" in steps:
                source = str(deriv / next(iter(done["clean"]["outputs"])))
            ctx = StepContext(deriv=deriv, source=source, recording=rec.path, out_dir=out_dir, base=rec.uid,
                              datatype=datatype, upstream={"_input": {"sha256 (with companions)": in_hash},
                                                           **done},
                              warnings=warnings)
            outputs, summary = RUNNERS[step](ctx, conf)
            hashes = {Path(p).relative_to(deriv).as_posix(): sha256_file(p) for p in outputs.values()}
            man = {"key": key, "step": step, "config": conf, "outputs": hashes, "summary": summary,
                   "warnings": warnings, "datatype": datatype, "source": rec.relpath, "version": version}
            cache.write_manifest(deriv, rec.uid, step, man)
            done[step] = man
            rows.append(_row(rec, step, "done", method=conf.get("method", ""), duration=time.perf_counter() - t0,
                             cpu=time.process_time() - c0, warnings=warnings, outputs=hashes, key=key, rss=_peak_rss_mb(), worker=worker))
        except Exception as err:  # one file's failure must not stop the batch
            failed = step
            msg = str(err) if isinstance(err, NeurodecodeError) else f"{err} [{_where(err)}]"
            rows.append(_row(rec, step, "failed", method=conf.get("method", ""), duration=time.perf_counter() - t0,
                             cpu=time.process_time() - c0, warnings=warnings, error=(type(err).__name__, msg), key=key, rss=_peak_rss_mb(),
                             worker=worker))
    return rows


def _where(err):
    tb = traceback.extract_tb(err.__traceback__)
    return f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"


def _worker_name():
    try:
        from distributed import get_worker

        return get_worker().name
    except (ImportError, ValueError):
        return f"pid-{os.getpid()}"


# --------------------------------------------------------------------------- derivatives folder


def _check_paths(input_path, deriv):
    inp = Path(input_path).resolve()
    out = Path(deriv).resolve()
    if out == inp or inp in out.parents:
        raise UsageError(
            f"The output folder {deriv} resolves inside the input {input_path}; choose a folder outside it "
            "(inputs are never written to)."
        )
    if inp.is_dir() and out in inp.parents:
        raise UsageError(f"The input {input_path} lies inside the output folder {deriv}; choose another output folder.")
    return inp, out


def _description(inp, cfg, version):
    return {
        "Name": "neurodecode batch derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "neurodecode",
            "Version": version,
            "Description": f"neurodecode batch --steps {','.join(cfg['steps'])}",
            "ConfigHash": config_hash(_step_configs(cfg), n=16),
            "Configuration": _step_configs(cfg),
        }],
        "SourceDatasets": [{"URL": inp.as_uri()}],
    }


def _step_configs(cfg):
    return {s: resolve_config(s, cfg) for s in cfg["steps"] + ["report"]}


def _prepare_deriv(out):
    """Refuse a file or a foreign non-empty folder; create the folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"The output path {out} exists and is not a folder.")
    desc_path = out / "dataset_description.json"
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        try:
            desc = json.loads(desc_path.read_text())
            ours = any(g.get("Name") == "neurodecode" for g in desc.get("GeneratedBy", []))
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise UsageError(
                f"The output folder {out} is not empty and is not a neurodecode derivatives folder; "
                "choose an empty or new folder."
            )
    out.mkdir(parents=True, exist_ok=True)


def _write_description(out, inp, cfg, version):
    """Write dataset_description.json (under the run lock: one writer per folder)."""
    desc_path = out / "dataset_description.json"
    text = json.dumps(_description(inp, cfg, version), indent=2, sort_keys=True) + "\n"
    if not desc_path.exists() or desc_path.read_text() != text:
        with atomic_path(desc_path, overwrite=True) as tmp:
            Path(tmp).write_text(text)


@contextlib.contextmanager
def _run_lock(out):
    """One batch per derivatives folder at a time (released by the kernel if we are killed)."""
    import fcntl

    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise UsageError(f"Another neurodecode batch is writing to {out}; wait for it to finish.") from err
        yield
    finally:
        os.close(fd)


def write_status(out, rows, summary):
    """Write ``batch_status.csv`` and ``batch_status.json`` atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (" | ".join(v) if k == "warnings" else ";".join(v)) if isinstance(v, list) else
                    ("" if v is None else v) for k, v in r.items()})
    for name, text in ((STATUS_CSV, buf.getvalue()),
                       (STATUS_JSON, json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")):
        with atomic_path(out / name, overwrite=True) as tmp:
            Path(tmp).write_text(text)


# --------------------------------------------------------------------------- the cluster


@contextlib.contextmanager
def _client(cfg, given=None):
    """A dask.distributed client: one given, an existing scheduler, or a loopback-only LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if given is not None:
        # A Client is used as is; a cluster object (e.g. dask_jobqueue.SLURMCluster, which
        # carries its own TLS security) gets a client of its own that is closed afterwards.
        if isinstance(given, Client):
            yield given
            return
        client = Client(given)
        try:
            yield client
        finally:
            client.close()
        return
    if cfg["scheduler"]:
        try:
            client = Client(cfg["scheduler"], timeout="10s")
        except (OSError, TimeoutError) as err:
            raise UsageError(f"Cannot reach the Dask scheduler at {cfg['scheduler']!r} ({err}).") from err
        try:
            yield client
        finally:
            client.close()
        return
    one = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                            "VECLIB_MAXIMUM_THREADS")}
    settings = {
        # Tested baseline of mne-bids-pipeline: no spilling ("unmanaged" memory cannot be
        # spilled), pause at 80 %, restart the worker before the machine runs out.
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": 0.8,
        "distributed.worker.memory.terminate": 0.95,
        # A file that kills its worker is failed, not resubmitted to kill the next one.
        "distributed.scheduler.allowed-failures": cfg["retries"],
        # One task per worker at a time: a worker that dies takes only its own file down.
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.nanny.pre-spawn-environ": one,
        "distributed.worker.daemon": False,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=cfg["workers"], threads_per_worker=1, processes=True, host="127.0.0.1",
            # No dashboard; the scheduler's small HTTP endpoint (health checks) gets a free
            # loopback port instead of 0.0.0.0-style defaults or a clash on 8787.
            dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
            worker_dashboard_address=None, memory_limit=cfg["memory_limit"], silence_logs=40,
        )
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


# --------------------------------------------------------------------------- entry point


def run_batch(input_path, deriv, *, steps=None, config=None, workers=None, scheduler=None, on_error=None,
              memory_limit=None, dry_run=False, progress=None, client=None, **overrides):
    """Run ``steps`` over every recording under ``input_path``, writing BIDS derivatives to ``deriv``.

    Parameters
    ----------
    input_path : path-like
        A BIDS dataset, any folder of recordings, or one recording.
    deriv : path-like
        Derivatives root; must not resolve inside ``input_path``. Created if missing.
    steps : str | list of str | None
        ``"clean,qc"`` etc.; ``None`` takes the configuration's.
    config : path-like | None
        A ``batch.yaml`` (see :data:`neurodecode.batch.config.DEFAULTS`).
    workers, scheduler, on_error, memory_limit
        Override the configuration.
    dry_run : bool
        Only report what would run (nothing is written).
    progress : callable | None
        Called as ``progress(rows_of_one_file, n_done, n_total)`` after each recording.
    client : distributed.Client | cluster | None
        Run on this client, or on a cluster object such as ``dask_jobqueue.SLURMCluster``
        (its security settings are kept); overrides ``scheduler`` and ``workers``.
    **overrides
        Any other configuration key, e.g. ``clean={"l_freq": 0.5}`` or ``include=["sub-01/*"]``.

    Returns
    -------
    BatchResult
    """
    t_start = time.perf_counter()
    cfg = load_config(config, {"steps": steps, "workers": workers, "scheduler": scheduler, "on_error": on_error,
                               "memory_limit": memory_limit, **overrides})
    inp, out = _check_paths(input_path, deriv)
    recs = discover(inp, cfg["include"])
    if not recs:
        raise UsageError(f"No recordings found under {input_path}.")
    version = _version()
    summary = {"input": str(inp), "deriv": str(out), "steps": cfg["steps"], "version": version,
               "config_hash": config_hash(_step_configs(cfg), n=16), "n_recordings": len(recs),
               "workers": cfg["workers"], "scheduler": (repr(client) if client is not None else cfg["scheduler"]) or "LocalCluster(127.0.0.1)"}
    if dry_run:
        rows = []
        for rec in recs:
            done, todo = plan_recording(rec, cache.input_hash(rec.path, rec.companions), cfg, out, version)
            rows += [_cached_row(rec, s, m) for s, m in done.items()]
            rows += [_row(rec, s, "pending", method=resolve_config(s, cfg).get("method", "")) for s in todo]
        summary.update(_counts(rows), dry_run=True, wall_s=round(time.perf_counter() - t_start, 3))
        return BatchResult(rows, 0, summary)

    _prepare_deriv(out)
    with _run_lock(out):
        _write_description(out, inp, cfg, version)
        stale = cache.remove_stale_temporaries(out)
        by_file = {}
        todo = []
        memo = cache.HashMemo(out) if cfg["trust_file_stat"] else None
        for rec in recs:
            try:
                in_hash = memo.input_hash(rec) if memo else cache.input_hash(rec.path, rec.companions)
            except OSError as err:
                by_file[rec.relpath] = [_row(rec, s, "failed", error=(type(err).__name__, f"{rec.relpath}: {err}"))
                                        for s in cfg["steps"] + ["report"]]
                continue
            done, steps_todo = plan_recording(rec, in_hash, cfg, out, version)
            if steps_todo:
                todo.append((rec, in_hash))
            else:
                by_file[rec.relpath] = [_cached_row(rec, s, m) for s, m in done.items()]
        if memo:
            memo.save()
        n_done = 0
        for rows in list(by_file.values()):
            n_done += 1
            if progress:
                progress(rows, n_done, len(recs))

        def order():
            return [r for rec in recs for r in by_file.get(rec.relpath, [])]

        aborted = False
        t_first = t_last = time.perf_counter()
        if todo:
            last_write = 0.0
            with _client(cfg, client) as client:
                from distributed import as_completed

                futures = {}
                queue = list(todo)
                ac = as_completed()

                def submit_next():
                    rec, in_hash = queue.pop(0)
                    fut = client.submit(process_recording, rec.to_dict(), in_hash, cfg, str(out), version,
                                        key=f"neurodecode-batch-{config_hash([rec.relpath, in_hash], n=24)}",
                                        pure=False, retries=0)
                    futures[fut] = rec
                    ac.add(fut)

                def fill():
                    # At most one file per worker thread in flight: a worker that dies (memory
                    # limit, segfault) then takes exactly one file down, never a queued neighbour.
                    slots = max(1, sum(client.nthreads().values()))
                    while queue and sum(not f.done() for f in futures) < slots:
                        submit_next()

                try:
                    client.run(_warm_up)
                except Exception as err:  # such a worker fails its files below, each with the reason
                    logging.getLogger("neurodecode").warning("Warming up the Dask workers failed: %s", err)
                t_first = time.perf_counter()
                fill()
                for fut in ac:
                    rec = futures[fut]
                    try:
                        rows = fut.result()
                        fut.release()  # drop the result from the worker: a later crash there loses nothing
                    except Exception as err:  # the worker died (memory limit, segfault) or was lost
                        name = type(err).__name__
                        msg = (f"{rec.relpath}: the worker processing this file died ({name}: {err}); "
                               f"per-worker memory limit {cfg['memory_limit']}")
                        rows = [_row(rec, s, "failed", error=(name, msg)) for s in cfg["steps"] + ["report"]]
                    by_file[rec.relpath] = rows
                    n_done += 1
                    if progress:
                        progress(rows, n_done, len(recs))
                    if any(r["status"] == "failed" for r in rows) and cfg["on_error"] == "abort":
                        aborted = True
                        in_flight = [f for f in futures if not f.done()]
                        client.cancel(in_flight)
                        reason = ("Aborted", f"on_error=abort after {rec.relpath} failed")
                        for other in [futures[f] for f in in_flight] + [r for r, _ in queue]:
                            by_file.setdefault(other.relpath, [_row(other, s, "skipped", error=reason)
                                                               for s in cfg["steps"] + ["report"]])
                        break
                    fill()
                    t_last = time.perf_counter()
                    if time.perf_counter() - last_write > 1.0:
                        write_status(out, order(), {**summary, "in_progress": True})
                        last_write = time.perf_counter()
        rows = order()
        exit_code = 1 if any(r["status"] in ("failed",) for r in rows) or aborted else 0
        summary.update(_counts(rows), exit_code=exit_code, aborted=aborted, stale_temporaries_removed=len(stale),
                       n_submitted=len(todo), first_submit_s=round(t_first - t_start, 3),
                       processing_s=round(t_last - t_first, 3),
                       wall_s=round(time.perf_counter() - t_start, 3),
                       status_csv=str(out / STATUS_CSV), status_json=str(out / STATUS_JSON))
        write_status(out, rows, summary)
    return BatchResult(rows, exit_code, summary)


def _counts(rows):
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    files_failed = sorted({r["file"] for r in rows if r["status"] == "failed"})
    return {"counts": counts, "files_failed": files_failed}
