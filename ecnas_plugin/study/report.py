"""`ecnas study report`: PNG figures and one self-contained HTML page from a study folder."""

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

    cmap = matplotlib.colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _step(ax, x, y, **kw) -> None:
    """Attainment surface as a staircase (max accuracy, min energy), extended to the plot edges."""
    if len(x) == 0:
        return
    ax.step(np.concatenate([x, [ax.get_xlim()[1]]]), np.concatenate([y, [y[-1]]]), where="post", **kw)


def make_figures(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Path], dict]:
    """Compute metrics and draw every figure; returns (per-run metrics, summary, figure paths, notes)."""
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
    per_run, summary = metrics.summarise(runs, traces, norms, best_hv)
    labels = list(dict.fromkeys(runs["label"]))
    colors = _colors(labels)
    fig_dir = Path(out_dir) / FIGURES
    fig_dir.mkdir(exist_ok=True)
    paths: list[Path] = []
    budgets = list(dict.fromkeys(runs["budget"]))

    def save(fig, name: str) -> None:
        path = fig_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    for s, space in spaces.items():
        truth = metrics.front(pd.DataFrame({metrics.ACC: space.true_test_acc, metrics.ENERGY: space.true_energy_kwh,
                                            "arch_key": [p.key for p in space.points],
                                            "epochs": [p.epochs for p in space.points]}))
        what = "cells" if space.epochs is not None else "(cell, budget) pairs"
        # 1. the space itself
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ax.scatter(space.true_energy_kwh, space.true_test_acc, s=6, c="0.6", label=f"all {len(space)} {what}")
        ax.step(truth[metrics.ENERGY], truth[metrics.ACC], where="post", c="k", lw=1.2, label="true Pareto front")
        ax.set(xlabel=f"training energy (kWh, {space.budget_label} epochs)", ylabel="test accuracy",
               title=f"{s}: energy vs accuracy of all {what}")
        ax.legend(loc="lower right", fontsize=8)
        save(fig, f"space_{s}.png")
        for b in budgets:
            sel = per_run[(per_run["space"] == s) & (per_run["budget"] == b)]
            if sel.empty:
                continue
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
                             label=f"{lab} (seed {median_run['seed']}, HV {median_run['hv']:.3f})")
                surf = metrics.attainment([metrics.front(traces[r]) for r in grp["run_id"]], norms[s])
                _step(axes[1], surf[50][:, 1], surf[50][:, 0], c=colors[lab], lw=1.6, label=f"{lab}: 50%")
                _step(axes[1], surf[10][:, 1], surf[10][:, 0], c=colors[lab], lw=0.8, ls="--")
            axes[0].set(title=f"{s}, {b}: front of the median-HV seed", xlabel="training energy (kWh)",
                        ylabel="test accuracy")
            axes[1].set(title=f"attainment surfaces over {sel['seed'].nunique()} seeds (solid 50%, dashed 10%)",
                        xlabel="training energy (kWh)")
            shown = pd.concat([metrics.front(traces[r]) for r in sel["run_id"]])
            lo = np.quantile(shown[metrics.ACC], 0.05)  # zoom on the fronts, not the whole space
            axes[0].set_ylim(lo - 0.03, space.true_test_acc.max() + 0.01)
            axes[0].legend(loc="lower right", fontsize=7)
            axes[1].legend(loc="lower right", fontsize=7)
            save(fig, f"fronts_{s}_{b}.png")
            # 4. HV and best accuracy vs search energy; HV vs evaluations
            fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
            max_e = max(traces[r]["search_energy_kwh"].iloc[-1] for r in sel["run_id"])
            e_grid = np.linspace(0, max_e, 300)
            n_max = int(sel["evaluations"].max())
            for lab, grp in sel.groupby("label", sort=False):
                hv_e, acc_e, hv_n = [], [], []
                for r in grp["run_id"]:
                    tr = traces[r]
                    curve = metrics.hv_curve(tr, norms[s]) / best_hv[s]
                    x = tr["search_energy_kwh"].to_numpy()
                    hv_e.append(metrics.on_grid(x, curve, e_grid))
                    acc_e.append(metrics.on_grid(x, tr["best_true_test_acc"].to_numpy(), e_grid))
                    hv_n.append(np.pad(curve, (0, n_max - len(curve)), constant_values=np.nan))
                with np.errstate(all="ignore"):
                    import warnings

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        axes[0].plot(e_grid, np.nanmean(hv_e, axis=0), c=colors[lab], label=lab)
                        axes[1].plot(np.arange(1, n_max + 1), np.nanmean(hv_n, axis=0), c=colors[lab], label=lab)
                        axes[2].plot(e_grid, np.nanmean(acc_e, axis=0), c=colors[lab], label=lab)
            target = summary[(summary["space"] == s) & (summary["budget"] == b)]["target_acc"].iloc[0]
            if np.isfinite(target):
                axes[2].axhline(target, c="k", ls=":", lw=1, label="random search final accuracy")
            axes[0].set(xlabel="cumulative search energy (kWh)", ylabel="HV / best possible HV",
                        title=f"{s}, {b}: hypervolume vs search energy")
            axes[1].set(xlabel="evaluations", ylabel="HV / best possible HV", title="hypervolume vs evaluations")
            axes[2].set(xlabel="cumulative search energy (kWh)", ylabel="test accuracy of incumbent",
                        title="best accuracy found vs search energy")
            for ax in axes:
                ax.legend(fontsize=7, loc="lower right")
                ax.grid(alpha=0.3)
            save(fig, f"hv_{s}_{b}.png")
    notes = {"study": study, "norms": norms, "best_hv": best_hv,
             "sources": {s: sp.table.sources_text() for s, sp in spaces.items()},
             "estimated": sorted(s for s, sp in spaces.items() if "estimated" in sp.table.sources())}
    return per_run, summary, paths, notes


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#eee}img{max-width:100%;margin:1em 0}code{background:#f4f4f4}")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, na_rep="—")


def write_report(out_dir: Path) -> Path:
    """Write ``figures/*.png`` and ``report.html`` (images embedded) into the study folder."""
    out_dir = Path(out_dir)
    per_run, summary, paths, notes = make_figures(out_dir)
    summary.to_csv(out_dir / "summary.csv", index=False)
    per_run.drop(columns=["label"]).to_parquet(out_dir / "runs.parquet", index=False)
    study = notes["study"]
    shown = summary[["space", "budget", "optimizer", "objective", "seeds", "evaluations", "hv_mean", "hv_sd",
                     "hv_ratio_mean", "hv_wins_vs_rs", "final_acc_mean", "final_acc_sd", "search_kwh_median",
                     "target_acc", "reached_target", "energy_to_target_kwh", "saving_vs_rs_total"]]
    norm_rows = pd.DataFrame([{"space": s, "accuracy range": f"{n.acc_min:.4f} – {n.acc_max:.4f}",
                               "energy range (kWh)": f"{n.energy_min:.4g} – {n.energy_max:.4g}",
                               "best possible HV": notes["best_hv"][s],
                               "energies (table rows)": notes["sources"][s]} for s, n in notes["norms"].items()])
    estimated = notes["estimated"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(study['name'])}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Study {html.escape(study['name'])}</h1><p>{html.escape(study.get('description', ''))}</p>",
             f"<p>{len(per_run)} of {len(study['runs'])} runs finished. Objectives: true test accuracy "
             "(mean over the table's repeats) vs true training energy of each evaluated cell. Search energy is "
             "the summed training energy of every evaluated cell (EA-HAS-Bench's accounting).</p>",
             *([f"<p><b>ESTIMATED energies</b> in {html.escape(', '.join(estimated))}: they come from a power "
                "model (no energy counter was read), not from a measurement; see the energy column of the "
                "normalisation table.</p>"] if estimated else []),
             "<h2>Summary (mean over seeds)</h2>", _table(shown),
             "<p><b>hv</b>: hypervolume with both objectives normalised to [0, 1] over the whole space "
             "(error between the best and worst cell, energy between the cheapest and dearest) and reference point "
             f"{metrics.REFERENCE}; <b>hv_ratio</b>: divided by the space's best possible HV; "
             "<b>hv_wins_vs_rs</b>: seeds where HV beats random search's at the same seed and budget. "
             "<b>target_acc</b>: random search's final accuracy (mean over seeds); <b>energy_to_target_kwh</b>: median "
             "search energy to first reach it (inf: fewer than half the seeds did); <b>saving_vs_rs_total</b>: "
             "1 − that / random search's median total search energy.</p>"
             "<p>EC-NAS's raw reference point [0.5, 1e6 kWh] is not used: energies here are below 1 kWh, so the "
             "volume is ~1e6·(accuracy − 0.5) for any front and ignores energy, and cells under 50% accuracy count "
             "for nothing.</p>",
             "<h2>Normalisation</h2>", _table(norm_rows), "<h2>Figures</h2>"]
    for path in paths:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h3>{html.escape(path.stem)}</h3><img alt='{html.escape(path.stem)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("<h2>Every run</h2>")
    parts.append(_table(per_run[["space", "budget", "optimizer", "objective", "seed", "evaluations", "hv", "hv_ratio",
                                 "front_size", "best_true_test_acc", "search_energy_kwh", "energy_to_target_kwh"]]))
    parts.append("</body></html>")
    report = out_dir / "report.html"
    report.write_text("\n".join(parts), encoding="utf-8")
    return report
