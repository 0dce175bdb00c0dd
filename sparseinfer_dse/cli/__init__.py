"""The `sparseinfer-dse` command line. Each command lives in its own module; this file wires them."""

from __future__ import annotations

from typing import Annotated

import typer

from sparseinfer_dse import __version__

app = typer.Typer(
    name="sparseinfer-dse",
    help="Search per-layer SparseInfer alpha profiles: sign-bit sparsity prediction and sparse MLP "
    "kernels for ReLU-fied LLMs, measured for token latency and accuracy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sparseinfer-dse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Search per-layer SparseInfer alpha profiles for ReLU-fied LLMs."""


_registered = False


def _register() -> None:
    """Attach every command (imported here so that the CLI module itself stays light)."""
    global _registered
    if _registered:
        return
    _registered = True
    from sparseinfer_dse.cli.analyze import analyze_command
    from sparseinfer_dse.cli.bench_kernels import bench_kernels_command
    from sparseinfer_dse.cli.bench_latency_model import bench_latency_model_command
    from sparseinfer_dse.cli.bench_model import bench_model_command
    from sparseinfer_dse.cli.calibrate import calibrate_command
    from sparseinfer_dse.cli.demo import demo_app
    from sparseinfer_dse.cli.eval import eval_command
    from sparseinfer_dse.cli.inspect import inspect_command
    from sparseinfer_dse.cli.profile import profile_app
    from sparseinfer_dse.cli.export import export_command
    from sparseinfer_dse.cli.report import report_command
    from sparseinfer_dse.cli.search import search_command
    from sparseinfer_dse.cli.status import status_command
    from sparseinfer_dse.cli.verify import verify_command
    from sparseinfer_dse.cli.synthetic import synthetic_build_command

    app.command("search", short_help="Search per-layer sparsity profiles for the Pareto front of (latency, accuracy).")(search_command)
    app.command("calibrate", short_help="Calibrate cats/teal/wisparse/rsparse thresholds on a model (cached).")(calibrate_command)
    app.command("export", short_help="Export a profile from a search (fastest within an accuracy loss, ...).")(export_command)
    app.command("verify", short_help="Measure a search's front, seeds and dense again, together (verified.csv).")(verify_command)
    app.command("report", short_help="Redraw a search's HTML report and plots.")(report_command)
    app.command("status", short_help="A search's trials per worker and its current front (shared storage).")(status_command)
    app.command("eval", short_help="lm-eval accuracy (and KL proxy) of a model under a profile, vs dense.")(eval_command)
    app.command("analyze", short_help="Per-layer sparsity and predictor precision/recall on real prompts.")(analyze_command)
    app.command("inspect", short_help="Describe a model and whether SparseInfer applies to it.")(inspect_command)
    app.add_typer(profile_app, name="profile")
    app.add_typer(demo_app, name="demo")
    bench_app = typer.Typer(help="Benchmarks: kernels, whole-model decode latency and the latency model.", no_args_is_help=True)
    bench_app.command("kernels", short_help="SparseInfer kernels vs torch dense on ProSparse shapes.")(bench_kernels_command)
    bench_app.command("model", short_help="Decode ms/token, dense vs sparse interleaved, Fig. 4 ablations.")(bench_model_command)
    bench_app.command("latency-model", short_help="A study's calibrated latency model and its error on held-out profiles.")(
        bench_latency_model_command)
    app.add_typer(bench_app, name="bench")
    synthetic_app = typer.Typer(help="Synthetic ProSparse-shaped ReLU models (random weights, ~90% sparse).", no_args_is_help=True)
    synthetic_app.command("build", short_help="Save a synthetic model as a Hugging Face directory.")(synthetic_build_command)
    app.add_typer(synthetic_app, name="synthetic")


def quiet_libraries() -> None:
    """The commands show their own progress: transformers' per-checkpoint "Loading weights" bar and
    datasets' "Generating split" bar (lm-eval loading a task's local data) are switched off, by their
    libraries' own switches; warnings and errors still print."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit code 2."""
    from sparseinfer_dse.openmp import passive_openmp

    # Idle OpenMP threads must not spin between kernel calls (measured on 2 cores: sparse decode
    # 1.12x faster than dense with the default policy, 2.06x with PASSIVE). Before torch is imported.
    passive_openmp()
    from sparseinfer_dse.cli.flags import flags_in_errors
    from sparseinfer_dse.errors import UserError

    _register()
    quiet_libraries()
    try:
        with flags_in_errors(typer.main.get_command(app)):  # a setting's field shown as its flag
            app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
