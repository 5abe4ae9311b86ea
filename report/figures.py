"""
The report's figures (matplotlib, imported when drawn): Figures 2-4 and the study's own.
"""
import os

import numpy as np

from engramlib.data import atomic_write
from report.inputs import paper

def figure_flip(plt, runs, s, color, out_dir):
    """Figure 2 against the share of training, so runs of any length sit beside the paper's Table 4
    (its extremes and flip at iter / 5000): per config the seed mean ± std, each seed thin, its flips dotted."""
    ref = paper()['table4']
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = {}
    for r in runs:
        groups.setdefault(r['config'], []).append(r)
    for name, rs in sorted(groups.items()):
        c = color[name]
        for r in rs:
            ev = [e for e in r['evolution'] if e['iter'] > 0]
            ax.plot([e['iter'] / r['max_iters'] for e in ev], [e['hot_cold_delta'] for e in ev], color=c, lw=0.5, alpha=0.5)
            if r['flip']['flip_iter'] is not None:
                ax.axvline(r['flip']['flip_iter'] / r['max_iters'], color=c, ls=':', lw=1)
        its = sorted(set.intersection(*({e['iter'] for e in r['evolution'] if e['iter'] > 0} for r in rs)))
        d = np.array([[{e['iter']: e['hot_cold_delta'] for e in r['evolution']}[i] for i in its] for r in rs])
        x = np.array(its) / rs[0]['max_iters']
        ax.plot(x, d.mean(0), color=c, lw=2, label=f"{name}: mean of {len(rs)} seed(s)" + (" ± std" if len(rs) > 1 else ''))
        if len(rs) > 1:
            ax.fill_between(x, d.mean(0) - d.std(0, ddof=1), d.mean(0) + d.std(0, ddof=1), color=c, alpha=0.15)
        p = ref.get(name)
        if p:
            ax.plot([p['max_hot_advantage_iter'] / 5000, p['flip_iter'] / 5000, p['max_cold_advantage_iter'] / 5000],
                    [p['max_hot_advantage'], 0, p['max_cold_advantage']], color=c, ls='--', marker='D', ms=6,
                    label=f"paper {name}: Table 4 (max hot adv., flip, max cold adv.)")
    ax.axhline(0, color='k', lw=0.8)
    flipped = any(r['flip']['flip_iter'] is not None for r in runs)
    ax.set(xlabel='share of training (iter / max_iters; paper: iter / 5000)', ylabel='val_loss_hot − val_loss_cold (nats)',
           title='Hot/cold gap over training (as Fig. 2)' + ('' if any(ref.get(n) for n in groups) else ', no paper counterpart')
           + ('; dotted: a seed\'s flip' if flipped else '; no run flips'))
    ax.legend(fontsize=6)
    return save_fig(fig, out_dir, 'fig2_hot_cold_delta.png')

def figures(runs, s, out_dir):
    plt = pyplot()
    names = sorted({r['config'] for r in runs} | set(s['table7']))
    color = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    paths = [figure_flip(plt, runs, s, color, out_dir)] if runs else []
    for draw in (figure_delta_vs_loss, figure_buckets, figure_layers):
        paths += draw(plt, runs, s, color, out_dir)
    for run, traj in list(s.get('data_side', {}).get('trajectories', {}).items())[:1]:
        paths += figure_trajectories(traj, run, out_dir)
    paths += figure_alpha_evolution(plt, runs, s, color, out_dir)
    return paths

def figure_delta_vs_loss(plt, runs, s, color, out_dir):
    """The hot − cold gap against val loss: every eval of every run, beside the KN trigram."""
    kn = s.get('data_side', {}).get('kn_by_size', [])
    if not (runs and kn):
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labelled = set()
    for r in runs:
        ev = [e for e in r['evolution'] if e['iter'] > 0]
        first = r['config'] not in labelled
        labelled.add(r['config'])
        ax.plot([e['val_loss'] for e in ev], [e['hot_cold_delta'] for e in ev], color=color[r['config']], marker='.', lw=0.8,
                label=f"{r['config']}: every eval of its {sum(q['config'] == r['config'] for q in runs)} seed(s)" if first else None)
    for i, k in enumerate(kn):             # one grey and marker per N_hot: the labellings differ, the counts do not
        ax.plot([x['kn_loss'] for x in k['rows']], [x['kn_hot_cold_delta'] for x in k['rows']], '--', color=str(0.55 * i / max(1, len(kn) - 1)),
                marker='sD^v'[i % 4],
                label=f"KN trigram on random shares of train documents, mean of the draws (N_hot {k['hot_size']:,})")
    ax.axhline(0, color='k', lw=0.8)
    ax.invert_xaxis()
    ax.set(xlabel='val loss (nats; training progresses to the right)', ylabel='val_loss_hot − val_loss_cold',
           title='Hot − cold gap against progress: models vs the data (KN)')
    ax.legend(fontsize=6)
    return [save_fig(fig, out_dir, 'delta_vs_loss.png')]

def figure_buckets(plt, runs, s, color, out_dir):
    """Figure 3: mean loss and hot share by α bucket."""
    buckets = {n: b for n, b in s['table7'].items() if b}
    if not buckets:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    w = 0.8 / len(buckets)
    for i, (n, b) in enumerate(buckets.items()):
        x = np.arange(len(b)) + i * w
        a1.bar(x, [v['mean_loss'] if v['count'] else 0 for v in b], w, color=color[n], label=n)
        a2.bar(x, [v['hot_share'] if v['count'] else 0 for v in b], w, color=color[n], label=n)
    labels = [f"{v['lo']:.1f}–{v['hi']:.1f}" for v in next(iter(buckets.values()))]
    for a, t, y in ((a1, '(a) mean loss by α bucket', 'mean loss (nats)'), (a2, '(b) hot share by α bucket', 'share of positions that are hot')):
        a.set_xticks(np.arange(len(labels)) + 0.4 - w / 2, labels)
        a.set(xlabel='α (layer mean)', ylabel=y, title=t)
    a1.legend(fontsize=7)
    return [save_fig(fig, out_dir, 'fig3_alpha_buckets.png')]

def figure_layers(plt, runs, s, color, out_dir):
    """Figure 4: per-layer Δα."""
    layers = {n: v for n, v in s['delta_alpha_per_layer'].items() if v}
    if not layers:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    lnames = sorted({l for v in layers.values() for l in v}, key=lambda x: int(x[1:]))
    w = 0.8 / len(layers)
    for i, (n, v) in enumerate(layers.items()):
        vals = [v.get(l) or 0.0 for l in lnames]
        bars = ax.bar(np.arange(len(lnames)) + i * w, vals, w, color=color[n], label=n)
        for b, val in zip(bars, vals):
            if val < 0:
                b.set_hatch('//')
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xticks(np.arange(len(lnames)) + 0.4 - w / 2, lnames)
    hatched = any((v.get(l) or 0.0) < 0 for v in layers.values() for l in lnames)
    ax.set(xlabel='Engram layer', ylabel='Δα = α_hot − α_cold',
           title='Per-layer gate preference (Fig. 4)' + ('; hatched: prefers cold' if hatched else '; every layer prefers hot'))
    ax.legend(fontsize=7)
    return [save_fig(fig, out_dir, 'fig4_delta_alpha_layers.png')]

def figure_alpha_evolution(plt, runs, s, color, out_dir):
    """Table 6 as a figure: α_hot and α_cold over training."""
    if not any(r['evolution'][0].get('alpha_hot') is not None for r in runs):
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        if r['evolution'][0].get('alpha_hot') is None:
            continue
        it = [e['iter'] for e in r['evolution']]
        ax.plot(it, [e['alpha_hot'] for e in r['evolution']], color=color[r['config']], label=f"{r['config']} s{r['seed']} hot")
        ax.plot(it, [e['alpha_cold'] for e in r['evolution']], color=color[r['config']], ls='--', label=f"{r['config']} s{r['seed']} cold")
    ax.set(xlabel='iter', ylabel='mean α', title='α_hot (solid) and α_cold (dashed) over training (Table 6)')
    ax.legend(fontsize=6, ncol=2)
    return [save_fig(fig, out_dir, 'alpha_evolution.png')]

def pyplot():
    """matplotlib without a display (Agg), imported only when a figure is drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt

def save_fig(fig, out_dir, name):
    plt = pyplot()
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=110, metadata={'Software': None}))
    plt.close(fig)
    return path

def figure_key_stability(ks, out_dir):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = list(ks['pairs'][0]['layers'])
    for li, l in enumerate(layers):
        it = [p['iter_to'] for p in ks['pairs']]
        col = plt.cm.tab10(li)
        ax.plot(it, [p['layers'][l]['cos_hot'] for p in ks['pairs']], color=col, marker='o', label=f'{l} hot')
        ax.plot(it, [p['layers'][l]['cos_cold'] for p in ks['pairs']], color=col, ls='--', marker='x', label=f'{l} cold')
    ax.set(xlabel='iter (later snapshot)', ylabel='cos(k before, k after)', title='Key stability between snapshots')
    ax.legend(fontsize=7)
    return [save_fig(fig, out_dir, 'key_stability.png')] + figure_trajectories(ks['trajectories'], ks['run'], out_dir)

def figure_trajectories(traj, run, out_dir):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for gi, (g, rs) in enumerate(traj.items()):
        it = [r['iter'] for r in rs]
        for ax, key in zip(axes, ('norm', 'drift', 'cos_to_final')):
            ax.plot(it, [r[key] if r[key] is not None else float('nan') for r in rs], marker='.', color=plt.cm.tab10(gi), label=g)
    for ax, t in zip(axes, ('row norm', 'drift since previous snapshot', 'cos to the final row')):
        ax.set(xlabel='iter', title=t)
    axes[0].legend(fontsize=7)
    fig.suptitle(f'N-gram memory rows over training: {run}', fontsize=9)
    return [save_fig(fig, out_dir, 'ngram_trajectories.png')]
