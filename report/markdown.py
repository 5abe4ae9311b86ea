"""
The report as Markdown: a checkpoint's, a study's, the data side's, provenance.
"""
import math
import os

from report import TABLES
from report.inputs import paper

def fmt_ms(ms, spec):
    """mean ± std (the std without the mean's sign)."""
    return f"{fmt(ms[0], spec)} ± {fmt(ms[1], spec.lstrip('+'))}" if ms[1] is not None else fmt(ms[0], spec)

# -----------------------------------------------------------------------------
# Markdown

def fmt(x, spec=None):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '–'
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return format(x, spec or ('d' if isinstance(x, int) else '.4f'))

def diff(ours, theirs, spec='+.4f'):
    return fmt(ours - theirs, spec) if ours is not None and theirs is not None else '–'

def md_table(header, rows):
    return '\n'.join(['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] +
                     ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]) + '\n'

def md_buckets(buckets, ref=None, ref_name='paper'):
    """α buckets; the paper's columns only beside the config that has them (ref)."""
    rows = []
    for i, b in enumerate(buckets or []):
        row = [f"[{b['lo']:.1f}, {b['hi']:.1f}{']' if b['hi'] == 1.0 else ')'}", fmt(b['mean_loss']), fmt(b['hot_share'], '.1%'), f"{b['count']:,}"]
        rows.append(row + ([fmt(ref[i]['mean_loss'], '.2f'), fmt(ref[i]['hot_share'], '.1%')] if ref else []))
    return md_table(['α range', 'mean loss', 'hot share', 'count'] + ([f'{ref_name} loss', f'{ref_name} hot share'] if ref else []), rows)

def md_checkpoint(rep):
    m, ref = rep['metrics'], paper()
    out = [f"# Stratified evaluation: {rep['config']} @ iter {rep['iter']}\n",
           f"checkpoint `{rep['ckpt']}`, memory `{rep['memory']}`, is_hot from N_hot={rep['hot_size']}, "
           f"{rep['val_windows']} validation windows ({m['n_positions']:,} positions)\n",
           md_table(['val_loss', 'val_loss_hot', 'val_loss_cold', 'hot_cold_delta', 'hot share'] +
                    [f'hot share o{o}' for o in (2, 3) if f'hot_share_o{o}' in m],
                    [[fmt(m['val_loss']), fmt(m['val_loss_hot']), fmt(m['val_loss_cold']), fmt(m['hot_cold_delta'], '+.4f'),
                      fmt(m['hot_share'], '.1%')] + [fmt(m[f'hot_share_o{o}'], '.1%') for o in (2, 3) if f'hot_share_o{o}' in m]])]
    if 'alpha_hot' in m:
        layers = sorted({k.split('_L')[1] for k in m if k.startswith('alpha_hot_L')}, key=int)
        out.append('\n## Gate by layer (α_hot, α_cold, Δα)\n')
        out.append(md_table(['layer', 'α_hot', 'α_cold', 'Δα'],
                            [[f'L{l}', fmt(m[f'alpha_hot_L{l}'], '.3f'), fmt(m[f'alpha_cold_L{l}'], '.3f'),
                              fmt(m[f'delta_alpha_L{l}'], '+.3f')] for l in layers] +
                            [['mean', fmt(m['alpha_hot'], '.3f'), fmt(m['alpha_cold'], '.3f'), fmt(m['delta_alpha'], '+.3f')]]))
        same = rep.get('config') == ref['table7']['config']       # the paper's Table 7 is one config's: beside that one only
        out.append(f"\n## α buckets, layer-mean α" + (f" (beside the paper's Table 7, {ref['table7']['config']})\n" if same else
                   f"\n\nThe paper's Table 7 is {ref['table7']['config']}'s; this is {rep.get('config')} ({rep['memory']}), so it "
                   f"stands alone.\n"))
        out.append(md_buckets(m['alpha_buckets'], *((ref['table7']['buckets'], f"paper {ref['table7']['config']}") if same else ())))
        for l in layers:
            out.append(f'\n### α buckets, layer {l}\n')
            out.append(md_buckets(m[f'alpha_buckets_L{l}']))
    if rep.get('data_baseline'):
        b = rep['data_baseline']
        out.append(f"\n## The data's own hot/cold gap (Kneser-Ney trigram baseline; the model's hot − cold: "
                   f"{fmt(m['hot_cold_delta'], '+.4f')})\n")
        out.append(md_data_baseline([{**b, 'data': os.path.basename(rep['data_dir'].rstrip('/')), 'hot_size': rep['hot_size'],
                                      'val_windows': rep['val_windows'], 'model_hot_cold_delta_mean': m['hot_cold_delta']}]))
    if rep.get('collisions'):
        out.append('\n## Collision statistics (training n-grams; expectation under uniform hashing)\n')
        out.append(md_table(['order', 'head', 'table', 'keys', 'slots used (exp.)', 'keys/used slot (exp.)',
                             'positions colliding in all heads (exp.)'],
                            [[c['order'], c['head'], f"{c['table_size']:,}", f"{c['keys']:,}",
                              f"{c['slots_used']:,} ({c['slots_used_expected']:,.0f})",
                              f"{fmt(c['keys_per_used_slot'], '.3f')} ({fmt(c['keys_per_used_slot_expected'], '.3f')})",
                              f"{fmt(c['positions_colliding_all_heads'], '.2%')} ({fmt(c['positions_colliding_all_heads_expected'], '.2%')})"]
                             for c in rep['collisions']]))
    return '\n'.join(out)

def md_data_baseline(rows):
    return md_table(['data', 'N_hot', 'val windows', 'KN loss', 'KN hot', 'KN cold', 'KN hot − cold', 'model hot − cold (runs)',
                     'next-token entropy hot', 'cold', 'hot − cold', 'contexts seen hot / cold'],
                    [[b['data'], f"{b['hot_size']:,}", b['val_windows'], fmt(b['kn_loss']), fmt(b['kn_loss_hot']), fmt(b['kn_loss_cold']),
                      fmt(b['kn_hot_cold_delta'], '+.4f'), f"{fmt(b.get('model_hot_cold_delta_mean'), '+.4f')} ({b.get('runs', 1)})",
                      fmt(b['entropy_hot']), fmt(b['entropy_cold']), fmt(b['entropy_hot_cold_delta'], '+.4f'),
                      f"{b['context_seen_share_hot']:.1%} / {b['context_seen_share_cold']:.1%}"] for b in rows])

def md_data_side(d):
    if d.get('no_data') and not d['baseline']:
        return [f"\n## How much of hot_cold_delta is the data?\n\nLeft out: the runs' data dir ({', '.join(d['no_data'])}) is "
                f"not here. The data-side tables read it; prepare it (the runs' docs say how) and render again.\n"]
    out = ['\n## How much of hot_cold_delta is the data?\n\nAn interpolated Kneser-Ney trigram LM counted on the '
           'train split (no memory, no training dynamics) scored on the same validation positions, split by the same '
           'is_hot labels; and the plug-in entropy of the next token after each position\'s 2-token context in the train '
           'counts (biased low for rarely seen contexts, which are mostly cold). A positive KN hot − cold means frequent '
           'contexts are harder to continue in the data itself.\n\n', md_data_baseline(d['baseline'])]
    if d.get('no_data'):
        out.append(f"\nLeft out of the data-side tables: the runs on {', '.join(d['no_data'])} (the data dir is not here).\n")
    if d['fingerprints']:
        orders = sorted({k[len('fp_rate_o'):] for f in d['fingerprints'] for k in f if k.startswith('fp_rate_o')})
        out += ['\n## Algorithm 1 as written: b-bit fingerprint membership\n\nShare of non-member queries that '
                'pass the fingerprint check (so are routed hot: false positives), beside 2^-b, and the hot coverage '
                '(any order) with them. Runs with `hot_fingerprint_bits` appear in Table 3 for their loss.\n\n',
                md_table(['data', 'N_hot', 'b', 'split'] + [f'FP rate o{o}' for o in orders] + ['expected 2^-b', 'hot coverage exact', 'with FP'],
                         [[f['data'], f"{f['hot_size']:,}", f['bits'], f['split']] + [f"{f[f'fp_rate_o{o}']:.2e}" for o in orders] +
                          [f"{f['expected_fp_rate']:.2e}", fmt(f['hot_coverage_exact'], '.2%'), fmt(f['hot_coverage_fp'], '.2%')]
                          for f in d['fingerprints']])]
    for k in d.get('kn_by_size', []):
        out += [f"\n## The data's own flip? KN trigram counted on random shares of train documents ({k['data']}, N_hot {k['hot_size']:,})\n\n"
                "The same val positions and is_hot labels; only the counts change: each share is drawn as random *documents* "
                "of the train split (seeded draws; mean ± std, min..max over them), not the first share of the stream, which "
                "measures where the counted text sits as much as how much of it there is. A sign change of KN hot − cold "
                "beyond the draws' spread is a flip without any model: rare contexts need data before their low entropy shows. "
                "Figure `delta_vs_loss.png` puts every model eval on the same axes (hot − cold against val loss).\n\n",
                md_table(['share of train documents', 'draws', 'train tokens (mean)', 'KN loss (mean)', 'KN hot − cold', 'min .. max'],
                         [[fmt(r['train_frac'], '.1%'), r['draws'], f"{r['train_tokens']:,}", fmt(r['kn_loss']),
                           fmt_ms((r['kn_hot_cold_delta'], r['kn_hot_cold_delta_std']), '+.4f'),
                           f"{fmt(r['kn_hot_cold_delta_min'], '+.3f')} .. {fmt(r['kn_hot_cold_delta_max'], '+.3f')}"] for r in k['rows']])]
    for fr in d.get('frequency', []):
        out += [f"\n## Which positions are hard? Val positions by route and 2-gram train count ({fr['data']}, N_hot {fr['hot_size']:,}, "
                f"{fr['val_windows']} windows, final iter {fr['iter']})\n\nCold positions split by how often their 2-gram (the memory's key) "
                "occurs in the train split: unseen vs seen rarely. Copyable: the target follows the same token earlier in the window "
                "(an induction head can copy it). Mean final loss per group: each config's seed mean, and the KN trigram data baseline."
                + (f" Groups without a position here are left out: {', '.join(empty)}." if (empty := [
                    f"{r['group']} ({r['targets']})" for r in fr['rows'] if not r['share']]) else '') + "\n\n",
                md_table(['group', 'targets', 'share of positions'] + fr['models'],
                         [[r['group'], r['targets'], fmt(r['share'], '.1%')] + [fmt(r[m], '.3f') for m in fr['models']]
                          for r in fr['rows'] if r['share']])]
    for run, traj in d['trajectories'].items():
        out += [f'\n## N-gram embedding trajectories: {run}\n\n', md_trajectories(traj)]
    return out

def at_iter(v, it, missing):
    return f"{fmt(v, '+.3f')} (iter {fmt(it)})" if v is not None else f"none ({missing})"

def paper_table(headers, rows, names, ref_rows, what):
    """A table with its 'paper' (and 'Δ') columns where one of its configs has a paper counterpart; otherwise
    those columns go, and a sentence says the paper has no such row (not a column of dashes)."""
    if any(n in ref_rows for n in names):
        return md_table(headers, rows)
    keep = [i for i, h in enumerate(headers) if h not in ('paper', 'Δ')]
    return (f"No paper counterpart: the paper's {what} has rows for {', '.join(sorted(ref_rows))} only, "
            f"and these configs are none of them.\n\n" + md_table([headers[i] for i in keep], [[r[i] for i in keep] for r in rows]))

def md_provenance(runs):
    """What made the runs: one row per distinct (commit, versions, device, processes), with its runs."""
    groups = {}
    for r in runs:
        p = r['provenance']
        commit = (p.get('git_commit') or 'unknown')[:10] + (' (+ changes)' if p.get('git_dirty') else '')
        key = (commit, p.get('torch', '?'), p.get('cuda') or '–', p.get('device', '?'), p.get('world_size', '?'))
        groups.setdefault(key, []).append(r['run'])
    return ('\n## Provenance\n\nThe code, libraries and machine of each run (from its config.json); runs made by '
            'different code are not strictly comparable.\n\n' +
            md_table(['commit', 'torch', 'CUDA', 'device', 'processes', 'runs'],
                     [[*k, ', '.join(v)] for k, v in groups.items()]))

def md_study(s):
    ref = paper()
    out = ['# Engram-Nine study report\n', 'Paper numbers: 95M FineWeb-Edu tokens, DeepSeek-V3 tokenizer, 5000 iters. '
           'Differences are ours − paper; they are only meaningful at the paper\'s scale.\n']
    if s.get('skipped'):
        out.append('\n**Skipped runs** (not in any table):\n\n' + '\n'.join(f"- `{d}`: {e}" for d, e in s['skipped'].items()) + '\n')
    datas = sorted({t['data'] for t in s['table3'].values()})
    if len(datas) > 1:
        out.append(f"\n**Warning: these runs were trained on different data ({'; '.join(datas)}); their losses are not comparable.**\n")
    out.append(md_provenance(s['runs']))
    for section in (md_table3, md_table4, md_patterns, md_table5):
        out += section(s, ref)
    out += md_data_side(s['data_side'])
    out += md_alpha(s, ref)
    for name, (_, render) in TABLES.items():
        out += render(s[name])
    return '\n'.join(out)

def md_table3(s, ref):
    """Table 3: final validation loss across seeds, beside the paper."""
    out = []
    out.append("\n## Table 3: final validation loss across seeds\n\ntok/s (logged): each run's median training throughput "
               "as it ran; runs made at other times or beside other runs on a shared machine are no speed comparison "
               "(bench.py measures speed side by side in one process).\n")
    rows = []
    for name, t in s['table3'].items():
        p = ref['table3'].get(name, {})
        rows.append([name, t['data'], t['val_windows'], len(t['seeds']), t['iter'],
                     fmt(t['val_loss']) + (f" ± {fmt(t['val_loss_std'])}" if len(t['seeds']) > 1 else ''),
                     fmt(p.get('val_loss')), diff(t['val_loss'], p.get('val_loss')), fmt(t['hot_cold_delta'], '+.4f'),
                     fmt(p.get('hot_cold_delta'), '+.2f'), fmt(t['tok_per_s'], ',.0f'), fmt(p.get('tok_per_s')),
                     fmt(t['params'], ','), fmt(p.get('params'), ',')])
    out.append(paper_table(['config', 'data', 'val windows', 'seeds', 'iter', 'val_loss', 'paper', 'Δ', 'hot_cold_delta', 'paper',
                            'tok/s (logged)', 'paper', 'params', 'paper'], rows, s['table3'], ref['table3'], 'Table 3'))
    return out

def md_table4(s, ref):
    """Table 4 per run and across seeds: the flip and the extremes of hot − cold."""
    out = []
    out.append('\n## Table 4: hot/cold flip\n\nWithout a flip ("none"), the extremes are taken over the whole run. Advantages are '
               'values of val_loss_hot − val_loss_cold, signed as the paper prints them: a hot advantage is negative (hot '
               'positions lower), a cold advantage positive.\n\n')
    rows = []
    for run, f in s['table4'].items():
        p = ref['table4'].get(f['config'], {})
        rows.append([run, f['config'], fmt(f['flip_iter']) if f['flip_iter'] is not None else 'none', fmt(p.get('flip_iter')),
                     at_iter(f['max_hot_advantage'], f['max_hot_advantage_iter'], 'never < 0'),
                     f"{fmt(p.get('max_hot_advantage'), '+.3f')} (iter {fmt(p.get('max_hot_advantage_iter'))})",
                     at_iter(f['max_cold_advantage'], f['max_cold_advantage_iter'], 'never > 0'),
                     f"{fmt(p.get('max_cold_advantage'), '+.3f')} (iter {fmt(p.get('max_cold_advantage_iter'))})"])
    out.append(paper_table(['run', 'config', 'flip iter', 'paper', 'max hot advantage (pre-flip)', 'paper',
                            'max cold advantage (post-flip)', 'paper'], rows, [f['config'] for f in s['table4'].values()],
                           ref['table4'], 'Table 4'))
    out.append('\n## Table 4 across seeds\n\nFlip iter and its share of training: mean ± std over the seeds that flipped; '
               'extremes: mean ± std over all seeds. The paper\'s share is its flip iter / 5000.\n\n')
    rows = []
    for name, f in s['flip_summary'].items():
        p = ref['table4'].get(name, {})
        rows.append([name, f"{f['flipped']}/{f['seeds']}", fmt_ms(f['flip_iter'], ',.0f') if f['flipped'] else 'none',
                     fmt(p.get('flip_iter')), fmt_ms(f['flip_frac'], '.0%') if f['flipped'] else 'none', fmt(p['flip_iter'] / 5000, '.0%') if p.get('flip_iter') else '–',
                     fmt_ms(f['max_hot_advantage'], '+.3f'), fmt(p.get('max_hot_advantage'), '+.3f'),
                     fmt_ms(f['max_cold_advantage'], '+.3f'), fmt(p.get('max_cold_advantage'), '+.3f')])
    out.append(paper_table(['config', 'flipped', 'flip iter', 'paper', 'share of training', 'paper', 'max hot advantage',
                            'paper', 'max cold advantage', 'paper'], rows, s['flip_summary'], ref['table4'], 'Table 4'))
    return out

def md_patterns(s, ref):
    """The paper's patterns with their verdicts."""
    out = []
    if s['patterns']:
        out.append('\n## The paper\'s patterns, tested\n\nReproduced / contradicted when a two-sided Welch t-test over the seeds '
                   '(5%, at the Welch-Satterthwaite degrees of freedom; against 0 for a sign) says so; not resolved otherwise, '
                   'and always with one seed.\n\n')
        out.append(md_table(['pattern', 'paper', 'ours (mean ± std over seeds)', 'verdict'],
                            [[p['pattern'], p['paper'], p['ours'], f"**{p['verdict']}**"] for p in s['patterns']]))
    return out

def md_table5(s, ref):
    """Table 5: the N_hot ablation."""
    out = []
    if s['table5']:
        out.append('\n## Table 5: N_hot ablation\n\nHot coverage of the eval windows (the positions every loss here is '
                   'measured on; prepare_fineweb.py prints the whole val split\'s, which differs when the windows are few).\n\n')
        out.append(paper_table(['config', 'N_hot', 'hot coverage (eval windows)', 'paper', 'flip iters', 'paper'],
                               [[n, t['n_hot'], fmt(t['hot_coverage'], '.1%'), fmt(ref['table5'].get(n, {}).get('hot_coverage'), '.0%'),
                                 ', '.join(fmt(i) for i in t['flip_iters'] if i is not None) or 'none',
                                 fmt(ref['table5'].get(n, {}).get('flip_iter'))]
                                for n, t in s['table5'].items()], s['table5'], ref['table5'], 'Table 5'))
    return out

def md_alpha(s, ref):
    """Tables 6 and 7 and Figure 4: the gate over training, its buckets, per layer."""
    out = []
    out.append('\n## Table 6: α_hot / α_cold evolution\n')
    for run, rows in s['table6'].items():
        out.append(f'\n### {run}\n')
        out.append(md_table(['iter', 'α_hot', 'α_cold', 'Δα', 'loss_hot − loss_cold'],
                            [[r['iter'], fmt(r['alpha_hot'], '.3f'), fmt(r['alpha_cold'], '.3f'), fmt(r['delta_alpha'], '+.3f'),
                              fmt(r['hot_cold_delta'], '+.4f')] for r in rows]))
    out.append('\n(paper, Nine-100K seed 0: ' + '; '.join(f"iter {r['iter']}: {r['alpha_hot']}/{r['alpha_cold']}, delta {r['hot_cold_delta']:+}"
                                                          for r in ref['table6']['rows']) + ')\n')
    out.append('\n## Table 7: α buckets at the final eval (layer-mean α)\n')
    for name, b in s['table7'].items():
        if b:
            out.append(f'\n### {name}\n')
            out.append(md_buckets(b, ref['table7']['buckets'] if name == ref['table7']['config'] else None,
                                  f"paper {ref['table7']['config']}"))
    if ref['table7']['config'] not in s['table7']:
        out.append(f"\n(The paper's Table 7 is {ref['table7']['config']}'s, not among these configs: " + '; '.join(
            f"[{b['lo']:.1f}, {b['hi']:.1f}): loss {b['mean_loss']}, hot {b['hot_share']:.1%}" for b in ref['table7']['buckets']) + ')\n')
    out.append('\n## Figure 4: per-layer Δα = α_hot − α_cold at the final eval\n')
    layer_names = sorted({l for v in s['delta_alpha_per_layer'].values() for l in v}, key=lambda x: int(x[1:]))
    out.append(md_table(['config'] + layer_names, [[n] + [fmt(v.get(l), '+.3f') for l in layer_names]
                                                   for n, v in s['delta_alpha_per_layer'].items() if v]))
    return out

# -----------------------------------------------------------------------------
# figures (matplotlib, Agg)

def md_key_stability(ks):
    rows = [[f"{p['iter_from']}→{p['iter_to']}", l, fmt(v['cos_hot']), fmt(v['cos_cold']),
             fmt(v['corr_alpha_stability'], '+.3f'), fmt(v['corr_alpha_loss'], '+.3f')]
            for p in ks['pairs'] for l, v in p['layers'].items()]
    return (f"# Key stability: {ks['run']}\n\ncos(k_t before, k_t after) of W_K e_t for the same validation positions "
            f"between adjacent snapshots; correlations across positions at the later snapshot.\n\n" +
            md_table(['snapshots', 'layer', 'cos hot', 'cos cold', 'corr(α, stability)', 'corr(α, loss)'], rows) +
            "\n## N-gram embedding trajectories (§7.2 (3))\n\nThe memory rows of sample n-grams of the lowest order: "
            "hot, cold with rows of their own, cold colliding in every head; mean over the group.\n\n" +
            md_trajectories(ks['trajectories']))

def md_trajectories(traj):
    return md_table(['group', 'iter', 'n-grams', 'row norm', 'drift since previous', 'cos to final'],
                    [[g, r['iter'], r['n'], fmt(r['norm'], '.4f'), fmt(r['drift'], '.4f'), fmt(r['cos_to_final'], '.3f')]
                     for g, rs in traj.items() for r in rs])
