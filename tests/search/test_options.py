"""SearchOptions: one precedence rule, self-validation with field names, flags in CLI messages, the
study identity; the stored trial profile (and the legacy `alphas` list); the progress bar's front."""

import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.eval.baseline_cache import task_data_digest
from sparseinfer_dse.search.driver import front_trials
from sparseinfer_dse.errors import OptionError
from sparseinfer_dse.search.options import SearchOptions
from sparseinfer_dse.search.outputs import trials_frame, write_outputs
from sparseinfer_dse.search.trial_profile import trial_profile

ROOT = Path(__file__).parents[2]


def test_flag_beats_study_file_beats_defaults(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[search]\nmodel = "m"\nbudget = 7\nsampler = "random"\ndata_dir = "d"\n')
    o = SearchOptions.resolve({"sampler": "nsga2"}, f)
    assert (o.model, o.budget, o.sampler, o.data_dir, o.seed) == ("m", 7, "nsga2", Path("d"), 0)


def test_demo_defaults_only_without_a_study_file(tmp_path):
    assert SearchOptions.resolve({}).tasks == "demo_arith"
    assert SearchOptions.resolve({"tasks": "x"}).tasks == "x"  # a flag still wins
    assert SearchOptions.resolve({"fidelity": "proxy"}).tasks is None
    assert SearchOptions.resolve({"model": "other"}).alpha_range == "0.95:1.10"
    f = tmp_path / "s.toml"
    f.write_text('[search]\nmodel = "demo"\n')
    assert SearchOptions.resolve({}, f).tasks is None


@pytest.mark.parametrize("values,field,text", [
    ({"budget": 0}, "budget", "budget must be at least 1"),
    ({"fidelity": "full"}, "tasks", "fidelity full needs tasks"),
    ({"fidelity": "fast"}, "fidelity", "fidelity must be full, proxy or staged"),
    ({"alpha_range": "x"}, "alpha_range", "alpha_range must look like 0.95:1.10"),
    ({"alpha_step": 0.03, "alpha_range": "0.9:1.0"}, "alpha_step", "not a whole number of alpha_step"),
    ({"proxy_metric": "nll"}, "proxy_metric", "proxy_metric must be kl or top1"),
    ({"sampler": "cma"}, "sampler", "sampler must be tpe"),
    ({"space": "rows"}, "space", "space must be per-layer"),
    ({"backend": "tpu"}, "backend", "backend must be one of auto"),
])
def test_errors_name_the_field(values, field, text):
    with pytest.raises(OptionError) as info:
        SearchOptions(model="m", **values)
    assert info.value.field == field and text in str(info.value)


@pytest.mark.parametrize("args,text", [
    (["--budget", "0"], "error: --budget must be at least 1"),
    (["--model", "m", "--fidelity", "full"], "error: --fidelity full needs --tasks"),
    (["--alpha-range", "0.9:1.0", "--alpha-step", "0.03"], "--alpha-range 0.9:1.0 is not a whole number of --alpha-step"),
])
def test_cli_shows_flags(args, text):
    proc = subprocess.run([sys.executable, "-c", "from sparseinfer_dse.cli import main; main()", "search", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_identity_matches_the_committed_demo_study():
    """studies/demo.toml resolves to the identity the committed demo study holds: it still resumes."""
    o = SearchOptions.resolve({}, ROOT / "studies" / "demo.toml")
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{ROOT / 'studies/results/demo/study.db'}")
    have = study.user_attrs["identity"]
    made = o.study_identity(config_hash=have["config_hash"], dtype=have["dtype"], space=have["space"],
                            method="sparseinfer", thresholds=None, device_kind=have["device_kind"], backend=have["backend"], decode_activation=None,
                            task_data=have["task_data"], threads=have["threads"])
    assert made == have
    assert have["task_data"] == {"demo_arith": task_data_digest("demo_arith", None)}  # the shipped task data


def test_legacy_alphas_trials_still_read(tmp_path):
    """Trials stored before the whole profile was (a bare `alphas` list, no intervals: a copy of the
    demo study as committed then) give the same columns and files."""
    db = tmp_path / "study.db"
    shutil.copyfile(Path(__file__).parent / "data" / "legacy_demo_study.db", db)
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{db}")
    t = study.trials[3]
    assert "profile" not in t.user_attrs and trial_profile(t.user_attrs).levels == tuple(t.user_attrs["alphas"])
    df = trials_frame(study)
    assert [df.loc[3, f"alpha_{i:03d}"] for i in range(4)] == t.user_attrs["alphas"] and "alphas" not in df
    write_outputs(study, tmp_path / "out", "staged", None, {})
    written = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert len(written) >= 1 and written["accuracy_full"].notna().all()
    for n in written.trial:
        prof = Profile.load(tmp_path / "out" / "profiles" / f"trial-{n:04d}.json")
        assert list(prof.levels) == study.trials[n].user_attrs["alphas"]


def test_front_trials_is_noise_aware():
    """The progress bar's front: a trial faster only within the latency noise does not dominate."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    for ms, acc in ((10.0, 1.0), (10.05, 2.0), (10.02, 0.5), (12.0, 0.4)):
        study.add_trial(optuna.trial.create_trial(values=[ms, acc], user_attrs={"latency_noise_ms": 0.1}))
    exact = {t.number for t in study.best_trials}
    noisy = {t.number for t in front_trials(study.get_trials())}
    assert exact == {0, 1} and noisy == {1}


def test_cli_defaults_are_the_options_defaults():
    """`search --help` shows the flags' defaults; they must be SearchOptions' (which are what runs)."""
    import inspect

    from sparseinfer_dse.cli.search import search_command

    params = inspect.signature(search_command).parameters
    for f in SearchOptions.__dataclass_fields__.values():
        assert params[f.name].default == f.default, f.name
