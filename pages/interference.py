"""Interference: every multi-skill merge against its single-skill merges on every metric (the
paper's Table 5), the task vectors in weight space (cosine similarity, sign conflicts), and the
update sizes ‖τ‖/‖θ_pre‖ per layer with the cosines of τ_G, τ_D and CFT/RT."""

from pathlib import Path

import streamlit as st

from ptm_core.analysis import figures, tables
from ptm_core.app import data, ui

PAGE = "interference"

source, res = ui.open_page("Interference")
ui.worker_banner(source)

tab_scores, tab_weights, tab_sizes = st.tabs(["Scores (Table 5)", "Weight space",
                                              "Update sizes"])

with tab_scores:
    if ui.empty_state(res):
        pass
    elif len(res.skills) < 2:
        st.info("Interference needs at least two skills.")
    else:
        mode = st.radio("ω of each skill", ["heuristic", "sliders"], horizontal=True,
                        key=f"{PAGE}:mode",
                        format_func={"heuristic": "heuristic ω = |D|/|G|",
                                     "sliders": "the sliders' ω (Trade-offs / Merge & export)"}.get)
        heur = res.heuristic_omegas()
        if mode == "heuristic":
            omegas = heur
        else:
            store = ui.omega_store()
            omegas = {s: store.get(s, heur.get(s, 0.0)) for s in res.skills}
        st.caption("ω: " + (", ".join(f"{k} = {v:.4g}" for k, v in omegas.items()) or "unknown"))
        if not omegas:
            st.info("The heuristic ω is unknown (the experiment records no data sizes).")
        table, missing = tables.interference_table(res, omegas)
        scores = tables.scores_table(res, omegas)
        c1, c2 = st.columns(2, gap="medium")
        with c1:
            ui.chart(figures.scores_figure(scores), "interference_scores",
                     scores.reset_index(names="merge"), key=f"{PAGE}:scores")
        with c2:
            ui.chart(figures.interference_figure(table), "interference_delta", table,
                     key=f"{PAGE}:delta")
        st.caption("Δ: the merge's score minus what the single-skill merges at the same ω score: "
                   "on a skill's own metric, that skill's single merge; on every other metric, "
                   "the mean of the single merges involved (no interference would give Δ ≈ 0).")
        if missing:
            names = ", ".join(tables.merge_label(m["skills"]) for m in missing)
            st.warning(f"Not measured at these ω: {names}.")
            if source.can_queue() and st.button("Queue the missing merges", key=f"{PAGE}:queue"):
                for m in missing:
                    try:
                        sub = source.submit(data.MergeRequest.make("task_arithmetic", m["omegas"]))
                        st.toast(f"{tables.merge_label(m['skills'])}: {sub.status}")
                    except Exception as e:  # noqa: BLE001
                        st.error(f"{tables.merge_label(m['skills'])}: {e}")


@st.cache_resource(show_spinner=False, max_entries=8)
def _weight_stats(models_key: tuple):
    from ptm_core.app.weightspace import checkpoint_stats
    return checkpoint_stats(dict(models_key[0]))


with tab_weights:
    try:
        models = source.models()
    except Exception as e:  # noqa: BLE001
        models = {}
        st.error(str(e))
    roles = {"base": models.get("base")} if models.get("base") else {}
    for s in res.skills:
        if s in models:
            roles[s] = models[s]
    if "general" in models and st.toggle("Include τ_G = θ_G − θ_pre", value=False,
                                         key=f"{PAGE}:with_general"):
        roles["general"] = models["general"]
    unreadable = [r for r, p in roles.items() if not (Path(p) / "config.json").is_file()]
    if unreadable:
        st.info("Weight-space analysis needs the checkpoints on this machine; not found (no "
                f"config.json): {', '.join(f'{r} = {roles[r]}' for r in unreadable)}.")
    elif "base" not in roles or len(roles) < 3:
        st.info("Weight-space analysis needs θ_pre and at least two skill checkpoints; this "
                "experiment does not name them" + (" (the paper's models are not here)."
                                                   if source.ref == "paper" else "."))
    else:
        sizes = {r: data.dir_size(Path(p)) if Path(p).is_dir() else 0 for r, p in roles.items()}
        total = sum(sizes.values())
        stamp = tuple(sorted((r, p) for r, p in roles.items()))
        mtimes = tuple(Path(p).stat().st_mtime_ns if Path(p).exists() else 0 for _, p in stamp)
        auto = total <= 512 * 1024 * 1024
        go = auto or st.button(f"Compute ({total / 1e9:.1f} GB to read)", key=f"{PAGE}:compute")
        if go:
            try:
                with st.spinner("Reading task vectors…"):
                    stats = _weight_stats((stamp, mtimes))
            except Exception as e:  # noqa: BLE001
                st.error(f"Cannot compute task-vector statistics: {e}")
                stats = None
            if stats is not None:
                st.caption(f"τ_k = θ_k − θ_pre over {stats.n_params:,} parameters.")
                c1, c2 = st.columns(2, gap="medium")
                cos, conf = stats.cosine(), stats.conflict()
                with c1:
                    ui.chart(figures.similarity_figure(cos, title="Cosine similarity of task vectors"),
                             "task_vector_cosine", cos.reset_index(names="task_vector"),
                             key=f"{PAGE}:cos")
                with c2:
                    ui.chart(figures.similarity_figure(conf, title="Fraction of sign conflicts",
                                                       zmin=0, zmax=1, colorscale="Reds", zmid=None),
                             "task_vector_sign_conflicts", conf.reset_index(names="task_vector"),
                             key=f"{PAGE}:conf")
                if len(stats.groups) > 1:
                    cl, fl = stats.cosine_per_layer(), stats.conflict_per_layer()
                    ui.chart(figures.per_layer_figure(cl, title="Cosine similarity per layer"),
                             "task_vector_cosine_per_layer", cl.reset_index(names="pair"),
                             key=f"{PAGE}:cos_layer")
                    ui.chart(figures.per_layer_figure(fl, title="Sign conflicts per layer", zmin=0,
                                                      zmax=1, colorscale="Reds", zmid=None),
                             "task_vector_sign_conflicts_per_layer", fl.reset_index(names="pair"),
                             key=f"{PAGE}:conf_layer")


@st.cache_resource(show_spinner=False, max_entries=8)
def _update_sizes(key: tuple):
    from ptm_core.app.diagnostics import diagnostic_report
    return diagnostic_report(key[0], dict(key[1]))


def _sizes_section() -> None:
    from ptm_core.app import diagnostics

    try:
        inputs = diagnostics.diagnostic_inputs(source, res.skills)
    except Exception as e:  # noqa: BLE001
        st.error(str(e))
        return
    if inputs.pre is None:
        st.info("Update sizes need θ_pre and the finetuned checkpoints; this experiment does not "
                "name them" + (" (the paper's models are not here)." if source.ref == "paper"
                               else "."))
        return
    if not inputs.ready():
        st.info(f"Update sizes need the checkpoints on this machine; θ_pre ({inputs.pre}) or "
                f"every finetune is missing: {inputs.how}.")
        return
    total = sum(data.dir_size(Path(p)) for p in [inputs.pre, *inputs.present.values()])
    if total > 512 * 1024 * 1024 and not st.button(f"Compute ({total / 1e9:.1f} GB to read)",
                                                   key=f"{PAGE}:sizes"):
        return
    try:
        with st.spinner("Reading the checkpoints tensor by tensor…"):
            report = _update_sizes(inputs.key())
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot compute the update sizes: {e}")
        return
    norms, cos = diagnostics.norms_frame(report), diagnostics.cosine_frame(report)
    st.caption("τ = θ − θ_pre. Weight arithmetic assumes small updates: real finetunes move the "
               "weights by well under 1 % of ‖θ_pre‖.")
    ui.chart(figures.per_layer_figure(norms, title="‖τ‖ / ‖θ_pre‖ per layer (%)", zmin=0,
                                      zmax=None, colorscale="Blues", zmid=None),
             "task_vector_norms_per_layer", norms.reset_index(names="task_vector"),
             key=f"{PAGE}:norms")
    ui.chart(figures.similarity_figure(cos, title="Cosine between τ_G, τ_D and CFT/RT"),
             "task_vector_cosine_all", cos.reset_index(names="task_vector"), key=f"{PAGE}:cos_all")
    if inputs.missing:
        st.caption(f"Not on this machine ({len(inputs.missing)}): "
                   + ", ".join(list(inputs.missing)[:5])
                   + (" …" if len(inputs.missing) > 5 else "") + f"; {inputs.how}.")
    st.caption("The likelihood of reference answers along ω and the loss barrier θ_G → θ_D: "
               "`python -m ptm_core diagnose EXPERIMENT.yml`.")


with tab_sizes:
    _sizes_section()
