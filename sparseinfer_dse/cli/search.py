"""`sparseinfer-dse search`, `export` and `report`: the Pareto search over alpha profiles."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer

from sparseinfer_dse import interrupts
from sparseinfer_dse.cli.options import DecodeActivationOpt, DeviceOpt, DtypeOpt, GgufFileOpt, ModelOpt
from sparseinfer_dse.errors import UserError


# The built-in demo's own study (as studies/demo.toml): what `search --model demo` runs when no flag
# or study file says otherwise, so the README's first command measures real task accuracy.
DEMO_DEFAULTS: dict[str, Any] = {"tasks": "demo_arith", "limit": 100, "alpha_range": "0.85:1.10"}


def _fill_unset(ctx: click.Context, values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`values` with `defaults` put in wherever no flag was given (a flag always wins).

    The source is compared by name: typer vendors its own click, whose enum is not click's."""
    out = dict(values)
    for key, value in defaults.items():
        source = ctx.get_parameter_source(key)
        if source is None or getattr(source, "name", "") == "DEFAULT":
            out[key] = value
    return out


def _apply_demo_defaults(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    if values.get("model") != "demo" or values.get("study") is not None:
        return values
    defaults = dict(DEMO_DEFAULTS)
    if values.get("fidelity") == "proxy":  # a proxy-only search measures no task accuracy
        del defaults["tasks"], defaults["limit"]
    return _fill_unset(ctx, values, defaults)


def _apply_study_file(ctx: click.Context, path: Optional[Path], values: dict[str, Any]) -> dict[str, Any]:
    """Values from a study TOML (`[search]` table, option names with underscores) where no flag was given."""
    if path is None:
        return values
    import tomllib

    if not path.is_file():
        raise UserError(f"study file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("search", data)
    unknown = sorted(set(table) - set(values))
    if unknown:
        raise UserError(f"{path}: unknown keys {', '.join(unknown)} (use the search option names, e.g. alpha_range)")
    table = {k: Path(v) if k in ("data_dir", "out") and v is not None else v for k, v in table.items()}
    return _fill_unset(ctx, values, table)


def search_command(
    ctx: typer.Context,
    model: ModelOpt = "demo",
    budget: Annotated[int, typer.Option(help="Trials in the whole study (a rerun continues up to it).")] = 20,
    study: Annotated[Optional[Path], typer.Option(help="Study TOML (see studies/); flags override it.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default studies/runs/<name>).")] = None,
    name: Annotated[str, typer.Option(help="Study name (folder and optuna study).")] = "demo",
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default: SQLite in the output folder); postgresql://user:password@host/db lets workers on many machines join one study (same --name).")] = None,
    space: Annotated[str, typer.Option(help="per-layer, early-block (alpha on the first N layers) or groups:K.")] = "per-layer",
    alpha_range: Annotated[str, typer.Option(help="Alpha range low:high.")] = "0.95:1.10",
    alpha_step: Annotated[float, typer.Option(help="Alpha grid step.")] = 0.01,
    sampler: Annotated[str, typer.Option(help="tpe (multivariate), nsga2, gp or random.")] = "tpe",
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    fidelity: Annotated[Optional[str], typer.Option(help="full (lm-eval every trial), proxy, or staged (proxy, lm-eval near the front). Default: staged with --tasks, else proxy.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="lm-eval tasks for accuracy, e.g. demo_arith or gsm8k_cot,bbh.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Documents per lm-eval task.")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option(help="Few-shot examples (task default if unset).")] = None,
    batch_size: Annotated[int, typer.Option(help="lm-eval batch size (keep it fixed across a study).")] = 16,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder with gsm8k/ and bbh/ for offline tasks, prompts and calibration.")] = None,
    calibration: Annotated[Optional[str], typer.Option(help="Proxy calibration text: gsm8k, demo or a file (default: demo for the demo model, else gsm8k).")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Calibration sequences for the proxy.")] = 32,
    proxy_metric: Annotated[str, typer.Option(help="Proxy objective: kl (maximise -KL) or top1 (agreement %).")] = "kl",
    latency_tokens: Annotated[int, typer.Option(help="Tokens decoded per latency run.")] = 16,
    latency_prompts: Annotated[int, typer.Option(help="Prompts per latency measurement.")] = 2,
    latency_repeats: Annotated[int, typer.Option(help="Interleaved dense/sparse rounds per trial.")] = 3,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    backend: Annotated[str, typer.Option(help="auto, numba-cpu, numba-cuda or torch.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch and numba.")] = None,
    gguf_file: GgufFileOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    decode_activation: DecodeActivationOpt = None,
    report: Annotated[bool, typer.Option(help="Draw the report at the end.")] = True,
    heartbeat_interval: Annotated[int, typer.Option(help="Seconds between heartbeats of a running trial (crash detection).")] = 10,
    grace_period: Annotated[int, typer.Option(help="Seconds without heartbeat after which another worker fails a trial as lost and re-enqueues it.")] = 30,
) -> None:
    """Search per-layer alpha profiles for the Pareto front of (decode latency, accuracy).

    Latency is measured on the device (batch 1, interleaved with dense); accuracy by the KL proxy,
    lm-eval (--tasks), or both (staged); `--model demo` defaults to staged `demo_arith` (limit 100,
    alpha 0.85:1.10). Uniform 1.00 and the paper's heuristic (1.03 on the first
    half of the layers) are the first trials. Rerunning the same command continues the study; Ctrl-C
    stops cleanly. Writes trials.csv, pareto.csv, profiles/, study.json and report.html.

    Several workers (GPUs, machines) join one study by running the same command with the same
    --storage (PostgreSQL) and --name; --budget counts the whole study's finished trials. Watch it
    with `sparseinfer-dse status`.
    """
    v = _apply_demo_defaults(ctx, _apply_study_file(ctx, study, dict(ctx.params)))
    run_search(v)


def run_search(v: dict[str, Any]) -> None:
    from sparseinfer_dse.search.driver import FIDELITIES, SearchConfig, finished_count, open_study, run_study
    from sparseinfer_dse.search.spaces import make_space, parse_alpha_grid
    from sparseinfer_dse.search.storage import open_storage, raise_if_storage_lost, redact

    if v["budget"] < 1:
        raise UserError("--budget must be at least 1")
    task_list = tuple(t.strip() for t in (v["tasks"] or "").split(",") if t.strip())
    fidelity = v["fidelity"] or ("staged" if task_list else "proxy")
    if fidelity not in FIDELITIES:
        raise UserError(f"--fidelity must be full, proxy or staged, not {fidelity!r}")
    if fidelity in ("full", "staged") and not task_list:
        raise UserError(f"--fidelity {fidelity} needs --tasks")
    grid = parse_alpha_grid(v["alpha_range"], v["alpha_step"])
    out = Path(v["out"] or Path("studies") / "runs" / v["name"])
    out.mkdir(parents=True, exist_ok=True)
    storage = v["storage"] or f"sqlite:///{(out / 'study.db').resolve()}"
    hb = v["heartbeat_interval"], v["grace_period"]
    rdb = open_storage(storage, *hb)  # before torch and the model load: a wrong URL fails at once, in one line

    from tqdm.auto import tqdm

    from sparseinfer_dse.engine import sparsify
    from sparseinfer_dse.engine.latency import set_threads
    from sparseinfer_dse.models.loading import ModelSpec, load_model
    from sparseinfer_dse.search.evaluator import EvalSettings, SearchEvaluator
    from sparseinfer_dse.search.outputs import write_outputs
    from sparseinfer_dse.search.report import write_report

    if v["threads"]:
        set_threads(v["threads"])

    lm = load_model(ModelSpec(v["model"], v["gguf_file"], v["device"], v["dtype"], v["decode_activation"]), tokenizer=True)
    space = make_space(v["space"], len(lm.mlps), grid)
    handle = sparsify(lm, None, v["backend"])
    if not lm.activation.is_sparse:
        typer.echo(f"note: {handle.notice}", err=True)
    settings = EvalSettings(task_list, v["limit"], v["num_fewshot"], v["batch_size"], v["data_dir"], 1234,
                            v["calibration"], v["calibration_samples"], v["proxy_metric"], v["latency_tokens"],
                            v["latency_prompts"], v["latency_repeats"])
    identity = {
        "model": v["model"], "config_hash": lm.identity.config_hash, "dtype": str(lm.dtype), "space": space.describe(),
        "fidelity": fidelity, "tasks": list(task_list), "limit": v["limit"], "num_fewshot": v["num_fewshot"],
        "proxy_metric": v["proxy_metric"], "calibration": v["calibration"],
        "calibration_samples": v["calibration_samples"], "device_kind": device_kind(lm.device),
        "backend": handle.backend, "decode_activation": lm.spec.decode_activation,
        "latency": [v["latency_tokens"], v["latency_prompts"], v["latency_repeats"]],
    }
    worker = f"{socket.gethostname()}:{os.getpid()}:{lm.device}"
    cfg = SearchConfig(v["budget"], space, fidelity, v["sampler"], v["seed"], v["timeout"], v["name"], storage,
                       identity=identity, worker=worker, device=identity["device_kind"],
                       heartbeat_interval=hb[0], grace_period=hb[1])
    study = open_study(cfg, rdb)
    optuna_quiet()
    study.set_user_attr("budget", v["budget"])  # shown by `status` (the last worker's --budget)
    typer.echo(f"preparing: latency workload and proxy reference for {v['model']} ({lm.device}, backend {handle.backend})")
    ev = SearchEvaluator(lm, handle, settings, progress=False)
    dense = study.user_attrs.get("dense")
    if dense is None:  # the first worker measures it; a worker racing it measures too, harmlessly
        dense = ev.dense()
        dense["worker"] = worker
        if study.user_attrs.get("dense") is None:
            study.set_user_attr("dense", dense)
    ev.reference_ms = dense["ms"]
    typer.echo(f"dense reference: {dense['ms']:.3f} ms/token" + (f", accuracy {dense['accuracy_full']:.1f}" if "accuracy_full" in dense else ""))

    done_before = finished_count(study)
    bar = tqdm(total=v["budget"], initial=min(done_before, v["budget"]), unit="trial", desc="search")

    objective = "acc" if fidelity == "full" else "proxy"  # what the trials' second value is (staged: the proxy)

    def on_trial(st, trial) -> None:
        from optuna.trial import TrialState

        bar.n = min(finished_count(st), v["budget"])
        bar.refresh()
        if trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs:
            bar.write(f"trial {trial.number} failed: {trial.user_attrs['fail_reason']}", file=sys.stderr)
        good = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if good:
            best = min(good, key=lambda t: (-t.values[1], t.values[0]))
            fastest = min(good, key=lambda t: t.values[0])
            bar.set_postfix_str(f"{objective}-front={len(st.best_trials)} fastest={fastest.values[0]:.2f}ms "
                                f"best-{objective}={best.values[1]:.4g}@{best.values[0]:.2f}ms")

    meta = {
        "model": v["model"], "identity": lm.identity.to_dict(), "device": str(lm.device), "backend": handle.backend,
        "dtype": str(lm.dtype), "fidelity": fidelity, "accuracy_label": ev.accuracy_label, "dense": dense,
        "space": space.describe(), "sampler": v["sampler"], "budget": v["budget"], "storage": redact(storage),
        "study_name": v["name"], "versions": _versions(), "command": _redacted_command(storage),
        "decode_activation": lm.spec.decode_activation, "worker": worker,
    }

    def on_wait(counts) -> None:
        bar.write(f"budget fully claimed: waiting for {counts['running']} trial(s) still running on other workers "
                  f"(a dead worker's trial is re-run after --grace-period {hb[1]} s; Ctrl-C leaves them to finish)",
                  file=sys.stderr)

    def on_lost(trial) -> None:
        bar.write(f"trial {trial.number} was failed by another worker (no heartbeat from here for "
                  f"--grace-period {hb[1]} s: this machine is overloaded?); its profile is re-run", file=sys.stderr)

    t0 = time.perf_counter()
    interrupted = False
    with interrupts.caught():  # Ctrl-C / SIGTERM: the trial FAILs and is re-queued, outputs written, exit 130
        try:
            run_study(study, cfg, ev, callbacks=[on_trial], on_wait=on_wait, on_lost=on_lost)
        except KeyboardInterrupt:
            interrupted = True
        except Exception as exc:
            raise_if_storage_lost(exc, storage)
            raise
        finally:
            try:
                bar.n = min(finished_count(study), v["budget"])  # other workers' trials too
                bar.refresh()
            except Exception:
                pass
            bar.close()
        meta["wall_s_last_run"] = round(time.perf_counter() - t0, 1)
        try:
            summary = write_outputs(study, out, fidelity, lm.identity, meta)
            if v["report"]:
                write_report(out)
        except KeyboardInterrupt:  # each file is whole (atomic.py); the study itself is all in the storage
            typer.echo(f"interrupted while writing {out}: every finished trial is kept in the study; rerun the "
                       "same command to write the outputs", err=True)
            raise typer.Exit(130) from None
        interrupted = interrupted or interrupts.requested()  # also one that arrived where it could not be raised
    typer.echo(f"{'interrupted: ' if interrupted else ''}{sum(summary['trials'].values())} trials ({', '.join(f'{n} {k.lower()}' for k, n in summary['trials'].items())}), front of {summary['front_size']} "
               f"-> {out}/pareto.csv, profiles/, report.html (rerun the same command to continue)")
    if interrupted:
        raise typer.Exit(130)


def device_kind(device: Any) -> str:
    """What must match for latencies to be comparable across workers: device type and model."""
    from sparseinfer_dse.machine import device_name

    return f"{device.type}:{device_name(device)}"


def optuna_quiet() -> None:
    """Failures are printed by the search itself, in one line (optuna would add a traceback)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _redacted_command(storage: str) -> str:
    from sparseinfer_dse.search.storage import redact

    args = [redact(a) if a == storage else a for a in sys.argv[1:]]
    return " ".join(["sparseinfer-dse", *args])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("sparseinfer-dse", "torch", "transformers", "lm_eval", "optuna", "numba", "numba-cuda"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def export_command(
    study: Annotated[Path, typer.Option("--study", help="A search output folder.")],
    out: Annotated[Optional[Path], typer.Option(help="Profile file to write (a folder with --pareto).")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Fastest profile within this loss of the dense accuracy (the study's accuracy units: points for lm-eval).")] = None,
    max_latency: Annotated[Optional[float], typer.Option(help="Most accurate profile at or under this ms/token.")] = None,
    pareto: Annotated[bool, typer.Option("--pareto", help="Export every Pareto profile.")] = False,
) -> None:
    """Export a profile from a finished search; it loads with --profile everywhere."""
    from sparseinfer_dse.search.export import export_front, export_one

    if pareto:
        paths = export_front(study, out or study / "export")
        typer.echo(f"wrote {len(paths)} profiles to {out or study / 'export'}")
        return
    if max_accuracy_drop is None and max_latency is None:
        raise UserError("give --max-accuracy-drop, --max-latency (or both), or --pareto")
    path, row = export_one(study, out or study / "chosen-profile.json", max_accuracy_drop=max_accuracy_drop,
                           max_latency=max_latency)
    typer.echo(f"wrote {path}: trial {int(row['trial'])}, {row['latency_ms']:.3f} ms/token, accuracy {row['accuracy']:.4g}")


def report_command(study: Annotated[Path, typer.Option("--study", help="A search output folder.")]) -> None:
    """Redraw the HTML report and PNGs of a search folder (offline: images beside report.html)."""
    from sparseinfer_dse.search.report import write_report

    if not (study / "trials.csv").is_file():
        raise UserError(f"{study} is not a search output folder (no trials.csv)")
    typer.echo(f"wrote {write_report(study)}")
