"""`sparseinfer-dse demo build|info`: rebuild the demo model, or describe the shipped one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

demo_app = typer.Typer(
    help="The built-in demo model: a small ReLU Llama trained here on GSM8K-style arithmetic "
    "(`--model demo`, lm-eval task `demo_arith`).",
    no_args_is_help=True,
)


@demo_app.command("build")
def build_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the checkpoint to (replaced if it exists).")] = Path("demo-model"),
    seed: Annotated[Optional[int], typer.Option("--seed", help="Recipe seed (default: the shipped model's).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="Training steps (default: the recipe's).")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A tiny model and a few steps: checks the recipe runs, in seconds.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: the recipe's, 2).")] = None,
    eval_problems: Annotated[Optional[int], typer.Option("--eval-problems", min=0, help="Held-out problems to evaluate (0: all).")] = None,
    lm_eval: Annotated[bool, typer.Option("--lm-eval/--no-lm-eval", help="Also score demo_arith through lm-eval for the card.")] = False,
) -> None:
    """Train the demo model with the shipped recipe (seeded; about 10-20 minutes on 2 CPU cores)."""
    from sparseinfer_dse.demo import card as shipped_card
    from sparseinfer_dse.demo.train import Recipe, build
    from sparseinfer_dse.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "card.json").is_file():
        raise UserError(f"--out {out} is a non-empty directory that is not a demo checkpoint; choose another")
    if tiny:
        recipe = Recipe.tiny()
    else:
        try:
            recipe = Recipe.from_dict(shipped_card()["recipe"])
        except UserError:
            recipe = Recipe()
        recipe.eval_every = 0
    if seed is not None:
        recipe.seed = seed
    if steps is not None:
        recipe.steps = steps
        recipe.warmup_steps = min(recipe.warmup_steps, max(1, steps // 10))
    if threads is not None:
        recipe.threads = threads
    if eval_problems is not None:
        recipe.eval_problems = eval_problems
    card = build(out, recipe, lm_eval=lm_eval, log=lambda s: typer.echo(s, err=True))
    _print_card(card, out)


@demo_app.command("info")
def info_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
    path: Annotated[Optional[Path], typer.Option("--path", help="A demo checkpoint directory (default: the shipped one).")] = None,
) -> None:
    """Describe the demo model: recipe, data, accuracy, per-layer decode sparsity."""
    from sparseinfer_dse.demo import card, checkpoint_dir

    d = path or checkpoint_dir()
    c = card(d)
    if as_json:
        typer.echo(json.dumps({"checkpoint_dir": str(d), **c}, indent=2))
    else:
        _print_card(c, d)


def _pct(x) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"


def _print_card(c: dict, d: Path) -> None:
    m, r, data, res = c["model"], c["recipe"], c["data"], c["results"]
    dense = res["dense_greedy"]
    lines = [
        f"demo model: {d}",
        f"  model: {m['architecture']} hidden_act={m['hidden_act']} d={m['hidden_size']} k={m['intermediate_size']} "
        f"layers={m['num_hidden_layers']} heads={m['num_attention_heads']} vocab={m['vocab_size']} "
        f"params={m['parameters']:,} ({m['dtype']})"
        + (f", {c['checkpoint_bytes'] / 1e6:.1f} MB" if "checkpoint_bytes" in c else ""),
        f"  recipe: seed={r['seed']} steps={r['steps']} batch={r['batch_size']} lr={r['lr']} "
        f"warmup={r['warmup_steps']} wd={r['weight_decay']} threads={r['threads']}",
        f"  data: {data['generator']}",
        f"        {data['train_problems_seen']:,} training problems seen; split: {data['split']}",
        f"  training time: {c['training']['seconds']:.0f} s ({c['training']['machine'].get('cpu_count')} CPUs, "
        f"torch {c['training']['machine'].get('torch')})",
        f"  dense greedy accuracy (held-out, n={dense['n']}): {_pct(dense['accuracy'])} +- {_pct(dense['stderr'])}",
    ]
    if "lm_eval" in res:
        le = res["lm_eval"]
        lines.append(f"  lm-eval demo_arith exact_match (strict-match, n={le['n']}, batch {le['batch_size']}): "
                     f"{_pct(le['accuracy'])} +- {_pct(le['stderr'])}")
    if "decode_sparsity_per_layer" in dense:
        per = " ".join(_pct(s) for s in dense["decode_sparsity_per_layer"])
        lines.append(f"  ReLU sparsity at decode positions per layer: {per} (mean {_pct(dense['decode_sparsity_mean'])})")
    typer.echo("\n".join(lines))
