
import optuna
import pytest
from hypothesis import given, strategies as st

from sparseinfer_dse.engine.profile import Profile
from sparseinfer_dse.errors import UserError
from sparseinfer_dse.search.pareto import Measured, dominates, front_mask, hypervolume_2d, more_accurate, verdict
from sparseinfer_dse.search.spaces import make_space, parse_level_grid

GRID = parse_level_grid("0.95:1.10", 0.01)


@pytest.mark.parametrize("text", ["per-layer", "early-block", "groups:3"])
def test_seed_profiles_are_representable(text):
    space = make_space(text, 8, GRID)
    for alphas in ([1.0] * 8, [1.03] * 4 + [1.0] * 4):
        trial = optuna.trial.FixedTrial(space.params_for(Profile(tuple(alphas))))
        got = space.suggest(trial).levels
        if text != "groups:3":  # 8 layers in 3 groups cannot hold the half/half split exactly
            assert got == tuple(alphas)
        assert len(got) == 8 and all(0.95 <= a <= 1.10 for a in got)


def test_early_block_shape():
    space = make_space("early-block", 6, GRID)
    assert space.suggest(optuna.trial.FixedTrial({"alpha": 1.05, "first": 2})).levels == (1.05, 1.05, 1.0, 1.0, 1.0, 1.0)


def test_groups_cover_all_layers_contiguously():
    space = make_space("groups:4", 30, GRID)
    assert [i for g in space.groups for i in g] == list(range(30))


@pytest.mark.parametrize("bad,msg", [("1.1:0.9", "below"), ("x", "must look like"), ("0:1", "must be > 0"),
                                     ("0.9:200", "out of range")])
def test_bad_alpha_range(bad, msg):
    with pytest.raises(UserError, match=msg):
        parse_level_grid(bad, 0.01)


def test_bad_space():
    with pytest.raises(UserError, match="per-layer, early-block or groups:K"):
        make_space("layers", 4, GRID)
    with pytest.raises(UserError, match="1 <= K <= 4"):
        make_space("groups:9", 4, GRID)


def _pt(ms, acc, lat_noise=0.0, acc_noise=0.0, items=None):
    return Measured(ms, acc, ms - lat_noise, ms + lat_noise, acc - acc_noise, acc + acc_noise,
                    None if items is None else tuple(items))


def test_noise_makes_ties():
    assert dominates(_pt(10.0, 0.9), _pt(10.5, 0.9))  # faster, same accuracy
    assert not dominates(_pt(10.0, 0.9, 1.0), _pt(10.5, 0.9, 1.0))  # within noise: not faster
    assert dominates(_pt(10.0, 0.95, 1.0), _pt(10.5, 0.9, 1.0))  # same speed within noise, more accurate
    assert not dominates(_pt(10.0, 0.9), _pt(9.0, 0.8))
    assert not dominates(_pt(10.0, 0.95, 0.0, 0.1), _pt(10.0, 0.9, 0.0, 0.1))  # accuracies inside their intervals


def test_accuracy_is_judged_paired_on_items():
    """Same items: 6 answers right only in a, none only in b -> McNemar p = 2/64: more accurate,
    even though the two 100-item intervals overlap widely."""
    a = [1] * 56 + [0] * 44
    b = [1] * 50 + [0] * 50
    pa, pb = _pt(10.0, 56.0, 0.1, 10.0, a), _pt(10.0, 50.0, 0.1, 10.0, b)
    assert more_accurate(pa, pb) == 1 and dominates(pa, pb)
    assert more_accurate(_pt(10.0, 56.0, 0.1, 10.0), _pt(10.0, 50.0, 0.1, 10.0)) == 0  # unpaired: a tie
    c = [1] * 50 + [0] * 46 + [1] * 4  # 4 discordant each way
    assert more_accurate(_pt(10.0, 54.0, 0.1, 10.0, c), pb) == 0
    assert verdict(pa, pb) == "latency same; more accurate"
    assert verdict(_pt(9.0, 50.0, 0.1), _pt(10.0, 50.0, 0.1)) == "faster; accuracy same"


def test_shifted_grants_accuracy_and_drops_items():
    p = _pt(10.0, 0.5, 0.1, 0.05, [1, 0]).shifted(0.2)
    assert p.accuracy == pytest.approx(0.7) and p.acc_interval == pytest.approx((0.65, 0.75)) and p.items is None


@given(st.lists(st.tuples(st.floats(1, 100), st.floats(0, 1), st.floats(0, 5), st.floats(0, 0.2)),
                min_size=1, max_size=25))
def test_front_mask_is_the_non_dominated_set(points):
    pts = [_pt(*p) for p in points]
    mask = front_mask(pts)
    for b in range(len(pts)):
        dominated = any(dominates(pts[a], pts[b]) for a in range(len(pts)) if a != b)
        assert mask[b] == (not dominated)
    assert mask.any()  # a front is never empty


def test_hypervolume():
    assert hypervolume_2d([1.0], [1.0], 2.0, 0.0) == pytest.approx(1.0)
    assert hypervolume_2d([1.0, 1.5], [0.5, 1.0], 2.0, 0.0) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert hypervolume_2d([3.0], [1.0], 2.0, 0.0) == 0.0


def test_sparsity_spaces_and_seeds():
    grid = parse_level_grid("0.0:0.9", 0.05, "teal")
    space = make_space("per-layer", 3, grid)
    prof = space.suggest(optuna.trial.FixedTrial({"s000": 0.1, "s001": 0.55, "s002": 0.9}))
    assert prof.levels == (0.1, 0.55, 0.9) and prof.method == "teal" and space.describe().startswith("teal:per-layer")
    seeds = space.seeds()
    assert list(seeds) == ["dense", "uniform-30%", "uniform-50%", "uniform-70%"]
    assert seeds["dense"].levels == (None,) * 3 and seeds["uniform-70%"].levels == (0.7,) * 3
    assert space.params_for(seeds["dense"]) == {"s000": 0.0, "s001": 0.0, "s002": 0.0}
    early = make_space("early-block", 4, grid)
    p = early.suggest(optuna.trial.FixedTrial({"sparsity": 0.6, "first": 1, "rest": 0.2}))
    assert p.levels == (0.6, 0.2, 0.2, 0.2) and early.params_for(p) == {"sparsity": 0.6, "first": 1, "rest": 0.2}
    groups = make_space("groups:2", 4, grid)
    assert groups.suggest(optuna.trial.FixedTrial({"g00": 0.3, "g01": 0.7})).levels == (0.3, 0.3, 0.7, 0.7)
    with pytest.raises(UserError, match="sparsity_range.*must be in"):
        parse_level_grid("0.5:1.5", 0.05, "wisparse")
    with pytest.raises(UserError, match="sparsity_step"):
        parse_level_grid("0.0:0.9", 0.07, "cats")
