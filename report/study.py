"""
A study aggregated: configs across seeds (Tables 3-7), flips, and the paper's patterns tested (Welch t-tests).
"""
import math

import numpy as np

from engram import has_hot_tier
from report import TABLES
from report.markdown import fmt_ms

def mean_std(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    return float(np.mean(xs)), (float(np.std(xs, ddof=1)) if len(xs) > 1 else None)

def study(runs):
    groups = {}
    for r in runs:
        groups.setdefault(r['config'], []).append(r)
    table3, table5, layers = {}, {}, {}
    for name, rs in sorted(groups.items()):
        vl, vs = mean_std([r['final']['val_loss'] for r in rs])
        table3[name] = {'seeds': sorted(r['seed'] for r in rs), 'val_loss': vl, 'val_loss_std': vs,
                        'data': ', '.join(sorted({r['data'] for r in rs})), 'val_windows': rs[0]['val_windows'],
                        'hot_cold_delta': mean_std([r['final']['hot_cold_delta'] for r in rs])[0],
                        'tok_per_s': mean_std([r['tok_per_s'] for r in rs])[0], 'params': rs[0]['params'],
                        'iter': rs[0]['final']['iter']}
        if has_hot_tier(rs[0]['memory']):
            table5[name] = {'n_hot': rs[0]['hot_size'], 'hot_coverage': mean_std([r['final']['hot_share'] for r in rs])[0],
                            'flip_iters': [r['flip']['flip_iter'] for r in rs]}
        layers[name] = {f'L{l}': mean_std([r['final'].get(f'delta_alpha_L{l}') for r in rs])[0] for l in rs[0]['engram_layers']}
    flips = {name: flip_summary(rs) for name, rs in sorted(groups.items())}
    return {'table3': table3, 'table4': {r['run']: {'config': r['config'], 'seed': r['seed'], **r['flip']} for r in runs},
            'flip_summary': flips, 'patterns': patterns(flips, groups),
            'table5': table5, 'table6': {r['run']: r['evolution'] for r in runs},
            'table7': {name: rs[0]['final'].get('alpha_buckets') for name, rs in sorted(groups.items())},
            'delta_alpha_per_layer': layers, **{name: compute(runs) for name, (compute, _) in TABLES.items()}}

def flip_summary(rs):
    """Table 4 over the seeds of one config: how many flipped, the flip iter (and its share of training)
    as mean ± std over the seeds that flipped, the extremes as mean ± std over all seeds."""
    f = [r['flip'] for r in rs]
    its = [x['flip_iter'] for x in f if x['flip_iter'] is not None]
    last = rs[0]['engram_layers'][-1] if rs[0]['engram_layers'] else None
    post = [r['final'].get('delta_alpha') for r in rs if r['flip']['flip_iter'] is not None]
    return {'seeds': len(rs), 'flipped': len(its), 'flip_iters': [x['flip_iter'] for x in f],
            'flip_iter': mean_std(its), 'flip_frac': mean_std([i / rs[0]['max_iters'] for i in its]),
            'max_hot_advantage': mean_std([x['max_hot_advantage'] for x in f]),
            'max_cold_advantage': mean_std([x['max_cold_advantage'] for x in f]),
            'post_flip_delta_alpha': mean_std(post), 'memory': rs[0]['memory'], 'hot_size': rs[0]['hot_size'],
            'deepest_layer': last, 'deepest_delta_alpha': mean_std([r['final'].get(f'delta_alpha_L{last}') for r in rs])}

T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)   # t_0.975(df)

def compare(a, b, n_a, n_b=None):
    """a - b from (mean, std) pairs over n_a / n_b seeds (n_b None: b is a constant, a one-sample test): Welch's
    t-test at the Welch-Satterthwaite degrees of freedom (rounded down), two-sided 5%: 'greater' / 'less', else
    'unresolved'; 'unresolved' too when a side has one seed (no spread to test against); None when a side has no value."""
    if a[0] is None or b[0] is None:
        return None
    if n_a < 2 or (n_b is not None and n_b < 2):
        return 'unresolved'
    va, vb = (a[1] or 0) ** 2 / n_a, ((b[1] or 0) ** 2 / n_b if n_b else 0.0)
    d, se = a[0] - b[0], math.sqrt(va + vb)
    if se == 0:
        return 'greater' if d > 0 else 'less' if d < 0 else 'unresolved'
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + (vb ** 2 / (n_b - 1) if n_b else 0.0))
    crit = T975[min(max(int(df), 1), len(T975)) - 1]
    return 'greater' if d / se > crit else 'less' if d / se < -crit else 'unresolved'

VERDICT = {True: 'reproduced', False: 'contradicted', None: 'not resolved'}

def patterns(flips, groups):
    """The paper's patterns (§5.2-5.5) tested on these runs, each with a verdict: reproduced /
    contradicted / not resolved at this many seeds (compare: a t-test at the seeds' degrees of freedom; one seed
    resolves nothing) / not testable."""
    nine = {n: f for n, f in flips.items() if f['memory'] == 'nine'}
    hashes = {n: f for n, f in flips.items() if f['memory'] == 'hash'}
    out = []

    def add(name, paper_says, ours, verdict):
        out.append({'pattern': name, 'paper': paper_says, 'ours': ours, 'verdict': verdict})
    if flips:
        n_runs, n_flip = sum(f['seeds'] for f in flips.values()), sum(f['flipped'] for f in flips.values())
        never = [n for n, f in flips.items() if f['flipped'] == 0 and f['seeds'] >= 2]
        add('1. every config flips', 'all 5 configs flip', f"{n_flip} of {n_runs} runs flip; configs that never flip over 2+ seeds: {', '.join(never) or 'none'}",
            VERDICT[False if never else True if n_flip == n_runs and all(f['seeds'] >= 2 for f in flips.values()) else None])
                                                                                # a flip counts once seen in 2+ seeds
    for nn, hn in (('nine_100_400k', 'hash_500k'), ('nine', 'hash')):     # the paper's main pair; the control's (configs/control)
        if nn in nine and hn in hashes:
            a, b = nine[nn], hashes[hn]
            if not a['flipped'] or not b['flipped']:
                add(f'2. {nn} flips earlier than {hn}', 'Nine iter 2000-2750 < Hash 3000', f"flips: {nn} {a['flipped']}/{a['seeds']}, {hn} {b['flipped']}/{b['seeds']}", 'not testable (no flip)')
            else:
                c = compare(b['flip_iter'], a['flip_iter'], b['flipped'], a['flipped'])
                add(f'2. {nn} flips earlier than {hn}', 'Nine iter 2000-2750 < Hash 3000',
                    f"{fmt_ms(a['flip_iter'], ',.0f')} vs {fmt_ms(b['flip_iter'], ',.0f')}", VERDICT[{'greater': True, 'less': False}.get(c)])
                c = compare(a['max_cold_advantage'], b['max_cold_advantage'], a['seeds'], b['seeds'])
                add(f'3. {nn} post-flip cold advantage > {hn}', 'Nine +0.10 to +0.17 > Hash +0.07 to +0.08',
                    f"{fmt_ms(a['max_cold_advantage'], '+.3f')} vs {fmt_ms(b['max_cold_advantage'], '+.3f')}", VERDICT[{'greater': True, 'less': False}.get(c)])
    flipped = {n: f for n, f in flips.items() if f['flipped'] and f['memory'] != 'none'}
    if flipped:
        signs = [compare(f['post_flip_delta_alpha'], (0.0, 0.0), f['flipped']) for f in flipped.values()]
        add('4. α_hot > α_cold persists after the flip', 'Δα > 0 at every eval after the flip',
            ', '.join(f"{n} {fmt_ms(f['post_flip_delta_alpha'], '+.3f')} ({f['flipped']} seeds)" for n, f in flipped.items()), sign_verdict(signs, 'greater'))
    else:
        add('4. α_hot > α_cold persists after the flip', 'Δα > 0 at every eval after the flip', 'no run flips', 'not testable (no flip)')
    if len(nine) >= 2:
        by_size = sorted(nine.values(), key=lambda f: f['hot_size'])
        means = [f['flip_iter'][0] for f in by_size]
        ours = ', '.join(f"N_hot {f['hot_size']:,}: {fmt_ms(f['flip_iter'], ',.0f')} ({f['flipped']}/{f['seeds']})" for f in by_size)
        if any(m is None for m in means):
            add('Table 5: smaller N_hot flips earlier', '20K: 2000 < 50K: 2250 < 100K: 2750', ours, 'not testable (no flip)')
        else:
            pairs = [compare(b['flip_iter'], a['flip_iter'], b['flipped'], a['flipped']) for a, b in zip(by_size, by_size[1:])]
            add('Table 5: smaller N_hot flips earlier', '20K: 2000 < 50K: 2250 < 100K: 2750', ours,
                VERDICT[True if all(c == 'greater' for c in pairs) else False if any(c == 'less' for c in pairs) else None])
    if len(nine) >= 2:
        by_size = sorted(nine.values(), key=lambda f: f['hot_size'])
        pairs = [compare(a['max_hot_advantage'], b['max_hot_advantage'], a['seeds'], b['seeds']) for a, b in zip(by_size, by_size[1:])]
        add('Table 4: a larger N_hot has a larger max hot advantage', '20K −0.154, 50K −0.196, 100K −0.251',
            ', '.join(f"N_hot {f['hot_size']:,}: {fmt_ms(f['max_hot_advantage'], '+.3f')}" for f in by_size),
            VERDICT[True if all(c == 'greater' for c in pairs) else False if any(c == 'less' for c in pairs) else None])
    if nine:
        vals = {n: f['deepest_delta_alpha'] for n, f in list(nine.items()) + list(hashes.items())}
        signs = [compare(f['deepest_delta_alpha'], (0.0, 0.0), f['seeds']) for f in nine.values()]
        add('§5.5: Nine\'s deepest Engram layer prefers cold', 'layer 6: Δα ≈ −0.06 for every Nine, > 0 for Hash-300K/500K',
            ', '.join(f"{n} L{flips[n]['deepest_layer']} {fmt_ms(v, '+.3f')}" for n, v in vals.items()), sign_verdict(signs, 'less'))
    return out

def sign_verdict(signs, expected):
    """Every config's one-sample test has the paper's sign: reproduced; any has the other sign: contradicted."""
    signs = [c for c in signs if c is not None]
    if not signs:
        return VERDICT[None]
    return VERDICT[True if all(c == expected for c in signs) else False if any(c not in (expected, 'unresolved') for c in signs) else None]
