"""Multi-fidelity and model-based built-in optimizers on real tables: continuation charged the extra
epochs only where the data has the run's curve, Hyperband's brackets in epochs and in kWh, the
multi-objective promotion, the Gaussian process and the model-based optimizers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from ecnas_plugin.adapters.base import SearchSpace
from ecnas_plugin.api import load_table
from ecnas_plugin.errors import MissingCapability
from ecnas_plugin.objectives import make_objective, pareto_mask
from ecnas_plugin.search import Budget, Optimizer, Point, TabularSpace, load_space, make_optimizer, run_search
from ecnas_plugin.energy.surrogates.features import CellBatch, nb101_feature_names, nb101_path_encoding, nb101_path_names
from ecnas_plugin.search.model_based import expected_improvement, gp_predict, standardised
from ecnas_plugin.search.multifidelity import EnergyHyperband, Hyperband
from ecnas_plugin.search.optimizers import screening_rungs

JOINT = "nb201-joint-flowers17-cpu"  # shipped in the package: 610 configurations, 10-epoch curves


def plain(acc: float, energy_kwh: float) -> float:
    return acc


@pytest.fixture(scope="module")
def joint():
    return load_space(JOINT, [1, 3, 10])


@pytest.fixture(scope="module")
def linscale(shared_data):
    return load_space("ecnas-4v-linscale", [4, 12, 36, 108])


@pytest.fixture(scope="module")
def space5(shared_data):
    return load_space("ecnas-5v", [2, 4])


class Scripted(Optimizer):
    """Proposes a fixed list of points: the accounting is tested apart from any search strategy."""

    name = "scripted"

    def __init__(self, space, points):
        super().__init__(space, np.random.default_rng(0))
        self.points = list(points)

    def propose(self) -> Point:
        return self.points.pop(0)


def test_continuing_a_run_pays_only_the_extra_epochs(joint):
    key = joint.keys[7]
    script = [Point(key, 1), Point(key, 3), Point(key, 10), Point(joint.keys[8], 3)]
    trace = run_search(joint, Scripted(joint, script), Budget(evaluations=4), plain, np.random.default_rng(0))
    curve = joint.query(key, 10).curve.set_index("epoch")["energy_kwh"]
    assert trace["train_energy_kwh"].tolist()[:3] == pytest.approx([curve[1.0], curve[3.0], curve[10.0]])
    assert trace["charged_energy_kwh"].tolist()[:3] == pytest.approx(
        [curve[1.0], curve[3.0] - curve[1.0], curve[10.0] - curve[3.0]])
    # a configuration started at 3 epochs pays all 3 of them
    assert trace["charged_energy_kwh"].iloc[3] == pytest.approx(trace["train_energy_kwh"].iloc[3])
    assert trace["search_energy_kwh"].iloc[-1] == pytest.approx(curve[10.0] + trace["train_energy_kwh"].iloc[3])
    assert joint.same_run(1, 10) and joint.run_of(Point(key, 1)) == joint.run_of(Point(key, 10))


def test_an_earlier_checkpoint_of_a_longer_run_costs_nothing(joint):
    key = joint.keys[3]
    trace = run_search(joint, Scripted(joint, [Point(key, 10), Point(key, 1)]), Budget(evaluations=2), plain,
                       np.random.default_rng(0))
    assert trace["charged_energy_kwh"].tolist() == pytest.approx([trace["train_energy_kwh"].iloc[0], 0.0])
    assert trace["val_acc"].iloc[1] == pytest.approx(joint.query(key, 1).val_acc)


def test_separately_trained_budgets_are_paid_in_full(linscale):
    """EC-NAS 4V trained each budget as its own run (own schedule): no continuation there."""
    key = linscale.keys[0]
    trace = run_search(linscale, Scripted(linscale, [Point(key, 4), Point(key, 12)]), Budget(evaluations=2), plain,
                       np.random.default_rng(0))
    assert (trace["charged_energy_kwh"] == trace["train_energy_kwh"]).all()
    assert not linscale.same_run(4, 12)


def test_ecnas_5v_halfway_checkpoint_is_a_budget_of_the_same_run(space5):
    assert space5.budgets == (2, 4) and space5.same_run(2, 4)
    rng = np.random.default_rng(1)
    trace = run_search(space5, make_optimizer("hyperband", space5, rng), Budget(evaluations=60), plain, rng)
    promoted = trace[trace["epochs"] == 4]
    started = set(trace.loc[trace["epochs"] == 2, "arch_key"])
    cont = promoted[promoted["arch_key"].isin(started)]
    assert len(cont) > 0 and (cont["charged_energy_kwh"] < cont["train_energy_kwh"]).all()


def test_hyperband_brackets_follow_li_et_al(linscale):
    rng = np.random.default_rng(0)
    trace = run_search(linscale, make_optimizer("hyperband", linscale, rng), Budget(evaluations=40), plain,
                       np.random.default_rng(1))
    # bracket s=3: 27 configurations at 4 epochs, the best 9 at 12, the best 3 at 36, the best at 108
    assert trace["epochs"].tolist() == [4] * 27 + [12] * 9 + [36] * 3 + [108]
    first = trace.iloc[:27]
    top9 = set(first.nlargest(9, "val_acc")["arch_key"])
    assert set(trace.iloc[27:36]["arch_key"]) == top9
    top3 = set(trace.iloc[27:36].nlargest(3, "val_acc")["arch_key"])
    assert set(trace.iloc[36:39]["arch_key"]) == top3
    assert trace.iloc[39]["arch_key"] == trace.iloc[36:39].nlargest(1, "val_acc")["arch_key"].iloc[0]
    assert not trace.duplicated(["arch_key", "epochs"]).any()


def test_energy_hyperband_sizes_brackets_in_kwh(joint, linscale):
    # Where a promotion is a continuation (joint table), a bracket of one kWh allotment admits
    # more configurations than Hyperband's 9 at the first of three rungs; where promotions are
    # whole runs (4V), it is priced at whole runs.
    first_rung = {}
    for space in (joint, linscale):
        rng = np.random.default_rng(0)
        opt = make_optimizer("ea-hyperband", space, rng)
        trace = run_search(space, opt, Budget(evaluations=60), plain, np.random.default_rng(1))
        epochs = trace["epochs"].tolist()
        first_rung[space.name] = epochs.index(next(e for e in epochs if e != space.budgets[0]))
        # The first bracket's allotment is Hyperband's, (s_max + 1) top-budget runs, in kWh: priced
        # from the first evaluation (scaled by epochs) when the second configuration asks to come in.
        fresh = make_optimizer("ea-hyperband", space, np.random.default_rng(0))
        first = space.evaluate(fresh.propose(), np.random.default_rng(1))
        fresh.observe(first, first.val_acc)
        fresh.propose()
        assert fresh.allotment == pytest.approx(
            len(space.budgets) * first.train_energy_kwh * space.budgets[-1] / space.budgets[0])
    assert first_rung[JOINT] > 9  # Hyperband's first rung of three
    assert 15 <= first_rung["ecnas-4v-linscale"] <= 40  # whole runs: about Hyperband's 27
    with pytest.raises(ValueError, match="bracket_kwh must be > 0"):
        EnergyHyperband(joint, np.random.default_rng(0), bracket_kwh=-1)
    with pytest.raises(ValueError, match="eta must be an integer >= 2"):
        Hyperband(joint, np.random.default_rng(0), eta=1)


def test_multi_objective_hyperband_promotes_the_front_first(linscale):
    rng = np.random.default_rng(2)
    opt = make_optimizer("mo-hyperband", linscale, rng)
    trace = run_search(linscale, opt, Budget(evaluations=60), None, np.random.default_rng(3))
    epochs = trace["epochs"].tolist()
    n = epochs.index(12)
    first = trace.iloc[:n]
    keep = max(1, n // 3)
    promoted = set(trace.iloc[n:n + keep]["arch_key"])
    assert (trace.iloc[n:n + keep]["epochs"] == 12).all() and promoted <= set(first["arch_key"])
    front = set(first[pareto_mask(first["val_acc"].to_numpy(), first["train_energy_kwh"].to_numpy())]["arch_key"])
    assert front <= promoted if len(front) <= keep else promoted <= front


def test_hyperband_refuses_asking_ahead(joint):
    opt = make_optimizer("hyperband", joint, np.random.default_rng(0))
    for _ in range(9):
        opt.propose()
    with pytest.raises(RuntimeError, match="tell each proposed point's result"):
        opt.propose()


def test_gaussian_process_interpolates_and_is_unsure_far_away():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(40, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    mean, sd = gp_predict(x, y, np.vstack([x[:5], [[8.0, 8.0]]]))
    assert mean[:5] == pytest.approx(y[:5], abs=0.05)
    assert sd[5] > 10 * sd[:5].max()
    ei = expected_improvement(np.array([0.0, 0.0, 1.0]), np.array([0.1, 1.0, 0.1]), best=0.5)
    assert ei[1] > ei[0] > ei[2] > 0


def test_gp_on_the_spaces_features_ranks_unseen_configurations():
    """The model-based optimizers' GP, on the joint space's own features, fitted on 150 of the
    table's configurations, ranks the other 460 by accuracy and, better, by energy."""
    space = load_space(JOINT, 10)
    keys = [space.keys[i] for i in np.random.default_rng(0).permutation(len(space.keys))]
    train, test = keys[:150], keys[150:]
    means = space.slices[10].means
    acc = dict(zip(space.slices[10].keys, means["val_acc"]))
    energy = dict(zip(space.slices[10].keys, means["train_energy_kwh"]))
    x, xt = space.encodings(train), space.encodings(test)
    centre, spread = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
    x, xt = (x - centre) / spread, (xt - centre) / spread
    predicted_acc, _ = gp_predict(x, np.array([acc[k] for k in train]), xt)
    predicted_energy, _ = gp_predict(x, np.log([energy[k] for k in train]), xt)
    assert kendalltau(predicted_acc, [acc[k] for k in test]).statistic > 0.3
    assert kendalltau(predicted_energy, [energy[k] for k in test]).statistic > 0.6


def test_nb101_encoding_adds_the_paths_that_let_the_gp_rank_accuracy(shared_data):
    """On EC-NAS 5V, the GP fitted on 150 cells ranks the other 2382 by accuracy far better on
    NB101's encoding (features and path encoding) than on the features alone (about 0.52 against
    0.18 here)."""
    space = load_space("ecnas-5v", 4)
    acc = dict(zip(space.slices[4].keys, space.slices[4].means["val_acc"]))
    keys = [space.keys[i] for i in np.random.default_rng(0).permutation(len(space.keys))]
    train, test = keys[:150], keys[150:]
    y, truth = np.array([acc[k] for k in train]), [acc[k] for k in test]
    taus = {}
    for name, encode in (("features", lambda ks: space.adapter.features([space._arch(k) for k in ks])[0]),
                         ("encoding", space.encodings)):
        x, xt = standardised(np.asarray(encode(train), float), np.asarray(encode(test), float))
        taus[name] = kendalltau(gp_predict(x, y, xt)[0], truth).statistic
    assert taus["encoding"] > 0.4 and taus["encoding"] > taus["features"] + 0.2, taus
    names = nb101_path_names()
    assert space.encodings(train[:1]).shape == (1, len(nb101_feature_names()) + len(names)) and len(names) == 364


def test_path_encoding_names_the_op_sequences_of_a_cell():
    """Hand-checked cells: input -> conv3x3 -> maxpool -> output beside input -> conv1x1 -> output,
    and the longest path a cell can have."""
    cell = ([[0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
            ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "output"])
    row = nb101_path_encoding(CellBatch.from_cells([cell]))[0]
    assert sorted(np.array(nb101_path_names())[row == 1]) == ["path:conv1x1-bn-relu",
                                                               "path:conv3x3-bn-relu,maxpool3x3"]
    chain = [[1 if j == i + 1 else 0 for j in range(7)] for i in range(7)]  # 7 vertices in a line: 5 interior ops
    ops = ["input", "conv3x3-bn-relu", "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "output"]
    row = nb101_path_encoding(CellBatch.from_cells([(chain, ops)]))[0]
    assert list(np.array(nb101_path_names())[row == 1]) == ["path:" + ",".join(ops[1:-1])]


@pytest.mark.parametrize("name", ["bo", "ea-bo", "parego"])
def test_model_based_optimizers_search_the_table(name, joint):
    rng = np.random.default_rng(0)
    opt = make_optimizer(name, joint, rng)
    objective = None if opt.multi_objective else plain
    trace = run_search(joint, opt, Budget(evaluations=25), objective, np.random.default_rng(1))
    assert len(trace) == 25 and not trace.duplicated(["arch_key", "epochs"]).any()
    assert set(trace["arch_key"]) <= set(joint.keys) and set(trace["epochs"]) <= {1, 3, 10}
    assert len(opt.history) == 25


def median_step_energy(space, name: str, evaluations: int, column: str, **params) -> float:
    """Median over 3 seeds of the mean ``column`` of a search's evaluations after its first 10."""
    per_seed = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        trace = run_search(space, make_optimizer(name, space, rng, **params), Budget(evaluations=evaluations), plain,
                           np.random.default_rng([seed, 1]))
        per_seed.append(trace[column].iloc[10:].mean())
    return float(np.median(per_seed))


def test_cost_aware_bo_prefers_cheaper_evaluations_than_plain_bo(joint):
    assert (median_step_energy(joint, "ea-bo", 30, "train_energy_kwh")
            < median_step_energy(joint, "bo", 30, "train_energy_kwh"))


def test_model_based_optimizers_need_features(shared_data):
    table = load_table("ecnas-5v")
    registered = load_space("ecnas-5v").adapter

    class NoFeatures(type(registered)):
        features = SearchSpace.features

    space = TabularSpace(table, space=NoFeatures(), epochs=4)
    with pytest.raises(MissingCapability, match="features.*parego"):
        make_optimizer("parego", space, np.random.default_rng(0))


def test_energy_aware_hyperband_with_soft_objective_runs_under_an_energy_budget(joint):
    soft = make_objective("soft", exponent=-0.07, reference_kwh=0.5)
    rng = np.random.default_rng(0)
    trace = run_search(joint, make_optimizer("ea-hyperband", joint, rng), Budget(search_kwh=0.0005), soft,
                       np.random.default_rng(1))
    assert trace["search_energy_kwh"].iloc[-2] <= 0.0005 < trace["search_energy_kwh"].iloc[-1]
    assert trace["search_energy_kwh"].iloc[-1] == pytest.approx(trace["charged_energy_kwh"].sum())


@pytest.mark.parametrize("name", ["hyperband", "ea-hyperband", "mo-hyperband"])
def test_hyperband_searches_a_small_space_to_its_end(name, shared_data):
    """Brackets whose first budget has no new configuration left close; the search goes on to
    the last point of the space without repeating one."""
    space = load_space("ecnas-4v", 108)
    rng = np.random.default_rng(0)
    opt = make_optimizer(name, space, rng)
    trace = run_search(space, opt, Budget(search_kwh=1e6), None if opt.multi_objective else plain, rng)
    assert len(trace) == len(space) == 91 and not trace.duplicated(["arch_key", "epochs"]).any()


def test_model_based_optimizers_search_a_small_space_to_its_end(shared_data):
    """Fewer points left than candidates wanted (91 cells, 200 candidates): the pool is what is left."""
    space = load_space("ecnas-4v", 108)
    rng = np.random.default_rng(0)
    trace = run_search(space, make_optimizer("bo", space, rng), Budget(evaluations=91), plain, rng)
    assert len(trace) == 91 and trace["arch_key"].nunique() == 91


def test_energy_aware_evolution_with_one_candidate_is_regularized_evolution(space5):
    for eta in (None, 3):  # unscreened and screened alike
        traces = []
        for name, params in (("evolution", {"eta": eta}), ("ea-evolution", {"candidates": 1, "eta": eta})):
            rng = np.random.default_rng(4)
            traces.append(run_search(space5, make_optimizer(name, space5, rng, **params), Budget(evaluations=40),
                                     plain, np.random.default_rng([4, 1])))
        assert traces[0]["arch_key"].tolist() == traces[1]["arch_key"].tolist()


def test_screened_evolution_starts_every_child_low_and_continues_the_best_of_each_rung(space5, joint):
    """Each configuration starts at the lowest rung; about 1/eta of a rung continues, the better
    ones (by the rung's accuracy), paying only the extra epochs."""
    for space, eta in ((joint, 3), (space5, 2)):
        rng = np.random.default_rng(7)
        trace = run_search(space, make_optimizer("evolution", space, rng, eta=eta), Budget(evaluations=150), plain,
                           np.random.default_rng([7, 1]))
        budgets = list(space.budgets)
        for key, runs in trace.groupby("arch_key"):
            assert runs["epochs"].tolist() == budgets[:len(runs)], key  # rung by rung, from the lowest
        for low, high in zip(budgets, budgets[1:]):
            at_low = trace[trace["epochs"] == low].set_index("arch_key")
            continued = at_low.index.isin(trace.loc[trace["epochs"] == high, "arch_key"])
            assert 0.6 / eta < continued.mean() < 1.5 / eta, (space.name, low, continued.mean())
            assert at_low["val_acc"][continued].median() > at_low["val_acc"][~continued].quantile(0.75)
            later = trace[trace["epochs"] == high]
            assert (later["charged_energy_kwh"] < 0.8 * later["train_energy_kwh"]).all()  # the extra epochs only


def test_screening_rungs_are_budgets_eta_apart(space5):
    assert screening_rungs([1, 3, 10], 3) == [1, 3, 10]
    assert screening_rungs([4, 12, 36, 108], 3) == [4, 12, 36, 108]
    assert screening_rungs([1, 2, 10], 3) == [2, 10]
    assert screening_rungs([2, 4], 3) == [4] and screening_rungs([2, 4], 2) == [2, 4]
    # without eta the budget is a dimension the mutation moves; with the top budget the only rung
    # every child trains at it
    epochs = {eta: set(run_search(space5, make_optimizer("evolution", space5, np.random.default_rng(3), eta=eta),
                                  Budget(evaluations=40), plain, np.random.default_rng([3, 1]))["epochs"])
              for eta in (None, 3)}
    assert epochs == {None: {2, 4}, 3: {4}}


def test_evolution_refuses_an_eta_below_two(space5):
    with pytest.raises(ValueError, match=r"optimizer 'evolution': eta must be an integer >= 2 \(or null: no screening\), got 1"):
        make_optimizer("evolution", space5, np.random.default_rng(0), eta=1)


def test_energy_aware_evolution_trains_cheaper_children(joint):
    """Same tournaments and screening, but the cheapest of four children by predicted energy: each
    step costs less."""
    for eta in (None, 3):
        assert (median_step_energy(joint, "ea-evolution", 60, "charged_energy_kwh", eta=eta)
                < 0.85 * median_step_energy(joint, "evolution", 60, "charged_energy_kwh", eta=eta))
