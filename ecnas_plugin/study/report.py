"""`ecnas study report`: PNG figures and one self-contained HTML page from a study folder.

The page opens with what a reader wants first: which optimizer did best on which space, by how
much and how sure (a paragraph in plain words, written from the numbers), then one ranked table
per space and budget, best row highlighted: medians over seeds with 95% bootstrap confidence
intervals, a paired Wilcoxon signed-rank test against random search, search energy and the
energy each method needed to reach random search's median final accuracy. Every figure has a
caption saying what its lines and bands are; curves are medians over seeds with the
interquartile range shaded, each seed's curve defined at every point, so a monotone quantity
stays monotone. No table shows ``inf``: a target not reached says so.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from ecnas_plugin.search.space import load_space

from . import metrics
from .runner import load_runs

FIGURES = "figures"


def _label(optimizer: str, objective: str) -> str:
    return optimizer if objective in ("accuracy", "pareto") else f"{optimizer} [{objective}]"


def _colors(labels: list[str]) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20" if len(labels) > 10 else "tab10"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _budget_words(budget: str) -> str:
    """``100evals`` → "100 evaluations", ``9kWh`` → "9 kWh of search energy"."""
    if budget.endswith("evals"):
        return f"{budget[:-5]} evaluations"
    return f"{budget[:-3]} kWh of search energy"


def _uses_energy() -> dict[tuple[str, str], bool]:
    """(optimizer, objective) → energy-aware, for every built-in optimizer; NASLib's ones use energy only
    through the objective."""
    from ecnas_plugin.search.optimizers import OPTIMIZERS

    return {name: cls.uses_energy for name, cls in OPTIMIZERS.items()}


def _step(ax, x, y, **kw) -> None:
    """Attainment surface as a staircase (max accuracy, min energy), extended to the plot edges."""
    if len(x) == 0:
        return
    ax.step(np.concatenate([x, [ax.get_xlim()[1]]]), np.concatenate([y, [y[-1]]]), where="post", **kw)


def make_figures(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[Path, str]], dict]:
    """Compute metrics and draw every figure; returns (per-run metrics, summary, (figure, caption) pairs, notes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study, runs, traces = load_runs(out_dir)
    runs = runs.copy()
    runs["label"] = [_label(o, j) for o, j in zip(runs["optimizer"], runs["objective"])]
    spaces = {}
    for s, e in runs[["space", "epochs"]].drop_duplicates().itertuples(index=False):
        spaces[s] = load_space(s, [int(b) for b in str(e).split("/")])  # the run's budget label, e.g. 4/12/36/108
    norms = {s: metrics.Normalisation.of_space(sp) for s, sp in spaces.items()}
    best_hv = {s: metrics.space_hv(sp, norms[s]) for s, sp in spaces.items()}
    method_uses_energy = _uses_energy()
    aware = {(o, j): method_uses_energy.get(o, False) or j != "accuracy"
             for o, j in runs[["optimizer", "objective"]].drop_duplicates().itertuples(index=False)}
    per_run, summary = metrics.summarise(runs, traces, norms, best_hv, aware)
    labels = list(dict.fromkeys(runs["label"]))
    colors = _colors(labels)
    fig_dir = Path(out_dir) / FIGURES
    fig_dir.mkdir(exist_ok=True)
    figures: list[tuple[Path, str]] = []
    budgets = list(dict.fromkeys(runs["budget"]))

    def save(fig, name: str, caption: str) -> None:
        path = fig_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        figures.append((path, caption))

    for s, space in spaces.items():
        truth = metrics.front(pd.DataFrame({metrics.ACC: space.true_test_acc, metrics.ENERGY: space.true_energy_kwh,
                                            "arch_key": [p.key for p in space.points],
                                            "epochs": [p.epochs for p in space.points]}))
        what = "configurations" if space.epochs is not None else "(configuration, budget) pairs"
        # 1. the space itself
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.scatter(space.true_energy_kwh, space.true_test_acc, s=6, c="0.6", label=f"all {len(space.points)} {what}")
        ax.step(truth[metrics.ENERGY], truth[metrics.ACC], where="post", c="k", lw=1.2, label="true Pareto front")
        ax.set(xlabel=f"training energy (kWh; {space.budget_label} epochs)", ylabel="test accuracy",
               title=f"{s}: energy and accuracy of every {what[:-1] if what.endswith('s') else what}")
        ax.legend(loc="lower right", fontsize=8)
        save(fig, f"space_{s}.png", f"The search space {s}: grey dots are its {len(space.points)} {what} "
             "(test accuracy and training energy, means over the table's repeats); the black staircase is its "
             "true Pareto front, the best any search can find.")
        for b in budgets:
            sel = per_run[(per_run["space"] == s) & (per_run["budget"] == b)]
            if sel.empty:
                continue
            n_seeds = sel["seed"].nunique()
            words = _budget_words(b)
            # 2. fronts (seed with the median hypervolume of each optimizer) and 3. attainment surfaces
            fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
            for ax in axes:
                ax.scatter(space.true_energy_kwh, space.true_test_acc, s=4, c="0.85")
                ax.step(truth[metrics.ENERGY], truth[metrics.ACC], where="post", c="0.4", lw=0.8, ls=":")
                ax.set_xlim(0, space.true_energy_kwh.max() * 1.02)
            for lab, grp in sel.groupby("label", sort=False):
                median_run = grp.iloc[(grp["hv"] - grp["hv"].median()).abs().argsort().iloc[0]]
                f = metrics.front(traces[median_run["run_id"]])
                axes[0].step(f[metrics.ENERGY], f[metrics.ACC], where="post", c=colors[lab], marker="o", ms=3,
                             label=f"{lab} (seed {median_run['seed']}, HV {median_run['hv_ratio']:.3f} of best)")
                surf = metrics.attainment([metrics.front(traces[r]) for r in grp["run_id"]], norms[s])
                _step(axes[1], surf[50][:, 1], surf[50][:, 0], c=colors[lab], lw=1.6, label=f"{lab}: 50%")
                _step(axes[1], surf[10][:, 1], surf[10][:, 0], c=colors[lab], lw=0.8, ls="--")
            axes[0].set(title=f"{s}, {words}: front of each optimizer's median seed",
                        xlabel="training energy (kWh)", ylabel="test accuracy")
            axes[1].set(title=f"attainment over {n_seeds} seeds (solid: half the seeds, dashed: 10%)",
                        xlabel="training energy (kWh)")
            shown = pd.concat([metrics.front(traces[r]) for r in sel["run_id"]])
            lo = np.quantile(shown[metrics.ACC], 0.05)  # zoom on the fronts, not the whole space
            axes[0].set_ylim(lo - 0.03, space.true_test_acc.max() + 0.01)
            axes[0].legend(loc="lower right", fontsize=7)
            axes[1].legend(loc="lower right", fontsize=7)
            save(fig, f"fronts_{s}_{b}.png",
                 f"{s}, {words}. Left: the Pareto front found by each optimizer's seed with the median "
                 "hypervolume (staircase through its evaluated configurations). Right: empirical attainment "
                 f"surfaces over the {n_seeds} seeds: the solid line is what half of the seeds reached or beat, "
                 "the dashed one what 10% did. Grey: every configuration; dotted: the true front.")
            # 4. HV vs search energy and vs evaluations, best accuracy vs search energy: medians and IQR bands
            fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
            max_e = float(np.median([traces[r]["search_energy_kwh"].iloc[-1] for r in sel["run_id"]]))
            e_grid = np.linspace(0, max_e, 300)
            n_max = int(sel["evaluations"].max())
            n_grid = np.arange(1, n_max + 1)
            for lab, grp in sel.groupby("label", sort=False):
                hv_e, acc_e, hv_n = [], [], []
                for r in grp["run_id"]:
                    tr = traces[r]
                    curve = metrics.hv_curve(tr, norms[s]) / best_hv[s]
                    x = tr["search_energy_kwh"].to_numpy()
                    hv_e.append(metrics.on_grid(x, curve, e_grid, before=0.0))
                    acc_e.append(metrics.on_grid(x, tr["best_true_test_acc"].to_numpy(), e_grid))
                    hv_n.append(metrics.on_grid(np.arange(1, len(curve) + 1), curve, n_grid, before=0.0))
                for ax, grid, curves in ((axes[0], e_grid, hv_e), (axes[1], n_grid, hv_n), (axes[2], e_grid, acc_e)):
                    mid, q1, q3 = metrics.seed_band(curves)
                    ax.plot(grid, mid, c=colors[lab], lw=1.4, label=lab)
                    ax.fill_between(grid, q1, q3, color=colors[lab], alpha=0.15, lw=0)
            target = summary[(summary["space"] == s) & (summary["budget"] == b)]["target_acc"].iloc[0]
            if np.isfinite(target):
                axes[2].axhline(target, c="k", ls=":", lw=1, label="random search's median final accuracy")
                axes[2].set_ylim(bottom=max(axes[2].get_ylim()[0], target - 0.15))  # where the incumbents differ
            axes[0].set(xlabel="search energy spent so far (kWh)", ylabel="hypervolume / best possible",
                        title=f"{s}, {words}: hypervolume vs search energy")
            axes[1].set(xlabel="evaluations", ylabel="hypervolume / best possible", title="hypervolume vs evaluations")
            axes[2].set(xlabel="search energy spent so far (kWh)", ylabel="test accuracy of the incumbent",
                        title="best accuracy found vs search energy")
            for ax in axes:
                ax.legend(fontsize=7, loc="lower right")
                ax.grid(alpha=0.3)
            save(fig, f"hv_{s}_{b}.png",
                 f"{s}, {words}. Each line is the median over {n_seeds} seeds, the shaded band the interquartile "
                 "range (25%-75% of the seeds). Left and middle: hypervolume of everything evaluated so far, as a "
                 "fraction of the space's best possible, against the search energy spent and against evaluations "
                 "(a seed counts 0 before its first evaluation and keeps its final value after its last). Right: "
                 "test accuracy of the configuration with the best observed validation accuracy so far (drawn "
                 "where every seed has one); dotted: random search's median final accuracy. Energy axes end at "
                 "the median total search energy of all runs shown.")
    notes = {"study": study, "norms": norms, "best_hv": best_hv,
             "sources": {s: sp.table.sources_text() for s, sp in spaces.items()},
             "estimated": sorted(s for s, sp in spaces.items() if "estimated" in sp.table.sources())}
    return per_run, summary, figures, notes


_CSS = ("body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eee}"
        "tr.best td{background:#e3f4e3;font-weight:bold}img{max-width:100%;margin:0.5em 0 0}"
        "figure{margin:1.5em 0}figcaption{font-size:13px;color:#444}code{background:#f4f4f4}")


def _num(v: float, digits: int = 3) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _kwh(v: float) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.3g}"


def _pct(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return "0%" if round(100 * v) == 0 else f"{100 * v:+.0f}%"


def _ci(mid: float, lo: float, hi: float) -> str:
    return f"{_num(mid)} [{_num(lo)}, {_num(hi)}]"


def _p(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _reach_text(row: pd.Series) -> str:
    if row["optimizer"] == "random" and row["objective"] == "accuracy":
        return f"{_kwh(row['energy_to_target_kwh'])} (its total)"
    if not np.isfinite(row["energy_to_target_kwh"]):
        return f"not reached by half ({int(row['reached_target'])}/{int(row['seeds'])})"
    lo, hi = row["energy_to_target_ci_low"], row["energy_to_target_ci_high"]
    ci = f"[{_kwh(lo) if np.isfinite(lo) else 'not reached'}, {_kwh(hi) if np.isfinite(hi) else 'not reached'}]"
    return f"{_kwh(row['energy_to_target_kwh'])} {ci} ({int(row['reached_target'])}/{int(row['seeds'])} reached)"


def ranked_table(group: pd.DataFrame) -> str:
    """One (space, budget)'s groups, best first, the best row highlighted; readable columns, no inf."""
    head = ["rank", "optimizer", "uses energy", "HV / best, median [95% CI]", "HV@30 / best", "better HV than RS",
            "paired p vs RS", "final accuracy, median [95% CI]", "search energy, median (kWh)",
            "energy to RS's accuracy, median [95% CI] (kWh)", "vs random search", "vs best energy-blind"]
    rows = []
    for i, (_, r) in enumerate(group.iterrows()):
        paired = "—" if r["hv_paired_seeds"] == 0 else f"{int(r['hv_wins_vs_rs'])}/{int(r['hv_paired_seeds'])} seeds"
        cells = [f"{int(r['rank'])}", html.escape(_label(r["optimizer"], r["objective"])),
                 "yes" if r["energy_aware"] else "no",
                 _ci(r["hv_ratio_median"], r["hv_ratio_ci_low"], r["hv_ratio_ci_high"]), _num(r["hv30_ratio_median"]),
                 paired, _p(r["hv_p_vs_rs"]),
                 _ci(r["final_acc_median"], r["final_acc_ci_low"], r["final_acc_ci_high"]),
                 _kwh(r["search_kwh_median"]), _reach_text(r),
                 _pct(-r["saving_vs_rs"]) if np.isfinite(r["saving_vs_rs"]) else "—",
                 _pct(-r["saving_vs_best_blind"]) if np.isfinite(r["saving_vs_best_blind"]) else "—"]
        cls = " class='best'" if i == 0 else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def plain_words(summary: pd.DataFrame) -> list[str]:
    """One sentence group per (space, budget): who won on hypervolume, by how much over random
    search and how sure; who reached random search's accuracy on the least energy."""
    out = []
    for (space, budget), group in summary.groupby(["space", "budget"], sort=False):
        group = group.sort_values("rank", kind="stable")
        best = group.iloc[0]
        rs = group[(group["optimizer"] == "random") & (group["objective"] == "accuracy")]
        text = (f"On <b>{html.escape(space)}</b> with {_budget_words(budget)}, <b>{html.escape(_label(best['optimizer'], best['objective']))}</b> "
                f"has the highest median hypervolume, {_num(best['hv_ratio_median'])} of the best possible "
                f"(95% CI {_num(best['hv_ratio_ci_low'])}–{_num(best['hv_ratio_ci_high'])})")
        if not rs.empty and not (best["optimizer"] == "random" and best["objective"] == "accuracy"):
            r = rs.iloc[0]
            sure = ("a difference this large would be unlikely by chance" if best["hv_p_vs_rs"] < 0.05 else
                    "not a clear difference at this number of seeds")
            text += (f", {_num(best['hv_ratio_median'] - r['hv_ratio_median'])} above random search's "
                     f"{_num(r['hv_ratio_median'])}; it beat random search on {int(best['hv_wins_vs_rs'])} of "
                     f"{int(best['hv_paired_seeds'])} seeds (paired Wilcoxon p {_p(best['hv_p_vs_rs'])}: {sure})")
            if len(group) > 1:
                second = group.iloc[1]
                text += (f". Next: {html.escape(_label(second['optimizer'], second['objective']))} "
                         f"({_num(second['hv_ratio_median'])})")
        text += "."
        aware = group[group["energy_aware"] & np.isfinite(group["energy_to_target_kwh"])]
        if not rs.empty and np.isfinite(rs.iloc[0]["target_acc"]):
            target = rs.iloc[0]["target_acc"]
            if aware.empty:
                text += (f" No energy-aware optimizer reached random search's median final accuracy "
                         f"({_num(target)}) in half of its seeds.")
            else:
                a = aware.sort_values("energy_to_target_kwh").iloc[0]
                text += (f" To reach random search's median final accuracy ({_num(target)}), the cheapest energy-aware "
                         f"optimizer, {html.escape(_label(a['optimizer'], a['objective']))}, needed "
                         f"{_kwh(a['energy_to_target_kwh'])} kWh (median over seeds): "
                         f"{_pct(-a['saving_vs_rs'])} against random search's {_kwh(rs.iloc[0]['energy_to_target_kwh'])} kWh"
                         + (f" and {_pct(-a['saving_vs_best_blind'])} against the best energy-blind optimizer"
                            if np.isfinite(a["saving_vs_best_blind"]) else "") + ".")
        out.append(text)
    return out


def write_report(out_dir: Path) -> Path:
    """Write ``figures/*.png``, ``summary.csv``, ``runs.parquet`` and ``report.html`` (images embedded)."""
    out_dir = Path(out_dir)
    per_run, summary, figures, notes = make_figures(out_dir)
    summary.to_csv(out_dir / "summary.csv", index=False)
    per_run.drop(columns=["label"]).to_parquet(out_dir / "runs.parquet", index=False)
    study = notes["study"]
    norm_rows = pd.DataFrame([{"space": s, "accuracy range": f"{n.acc_min:.4f} – {n.acc_max:.4f}",
                               "energy range (kWh)": f"{n.energy_min:.4g} – {n.energy_max:.4g}",
                               "best possible HV": f"{notes['best_hv'][s]:.4f}",
                               "energies (table rows)": notes["sources"][s]} for s, n in notes["norms"].items()])
    estimated = notes["estimated"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study['name'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Study {html.escape(study['name'])}</h1><p>{html.escape(study.get('description', ''))}</p>",
             "<h2>Who won</h2>", *(f"<p>{t}</p>" for t in plain_words(summary)),
             *([f"<p><b>ESTIMATED energies</b> in {html.escape(', '.join(estimated))}: they come from a power "
                "model (no energy counter was read), not from a measurement; see the energy column of the "
                "normalisation table.</p>"] if estimated else []),
             f"<p>{len(per_run)} of {len(study['runs'])} runs finished. Objectives: true test accuracy "
             "(mean over the table's repeats) against true training energy of each evaluated configuration. "
             "Search energy is the summed training energy of every evaluation (EA-HAS-Bench's accounting; a "
             "configuration continued to a later budget of the same run pays only the extra epochs).</p>",
             "<h2>Ranked results</h2>",
             "<p>Ranked by median hypervolume over seeds (HV / best: normalised hypervolume divided by the space's "
             "best possible, reference point "
             f"{metrics.REFERENCE} after normalising error and energy to [0, 1] over the space). 95% CI: percentile "
             "bootstrap of the median over seeds. <i>better HV than RS</i>: seeds on which the optimizer's hypervolume "
             "beats random search's with the same seed; <i>paired p</i>: two-sided Wilcoxon signed-rank test of those "
             "paired differences. <i>Final accuracy</i>: test accuracy of the incumbent (best observed validation "
             "accuracy). <i>Energy to RS's accuracy</i>: median over seeds of the search energy spent when the "
             "incumbent first reached random search's median final accuracy (random search's own figure: its median "
             "total); <i>vs</i> columns: that figure's change against random search and against the best optimizer "
             "that ignores energy (negative: less energy). <i>Uses energy</i>: the method or its objective takes "
             "energy into account. HV@30: after the first 30 evaluations.</p>"]
    for (space, budget), group in summary.groupby(["space", "budget"], sort=False):
        parts.append(f"<h3>{html.escape(space)}, {_budget_words(budget)}</h3>")
        parts.append(ranked_table(group.sort_values("rank", kind="stable")))
    parts += ["<p>EC-NAS's raw reference point [0.5, 1e6 kWh] is not used: energies here are below 1 kWh, so the "
              "volume is ~1e6·(accuracy − 0.5) for any front and ignores energy, and configurations under 50% "
              "accuracy count for nothing.</p>",
              "<h2>Normalisation</h2>",
              norm_rows.to_html(index=False, border=0, escape=True), "<h2>Figures</h2>"]
    for path, caption in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Every run</h2>")
    every = per_run[["space", "budget", "optimizer", "objective", "seed", "evaluations", "hv_ratio", "hv30_ratio",
                     "front_size", "best_true_test_acc", "search_energy_kwh", "energy_to_target_kwh"]].copy()
    every["energy_to_target_kwh"] = [_kwh(v) if np.isfinite(v) else "not reached" for v in every["energy_to_target_kwh"]]
    every.columns = ["space", "budget", "optimizer", "objective", "seed", "evaluations", "HV / best", "HV@30 / best",
                     "front size", "final accuracy", "search energy (kWh)", "energy to RS's accuracy (kWh)"]
    parts.append(every.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="—"))
    parts.append("</body></html>")
    report = out_dir / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report
