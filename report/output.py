"""
Where a report goes: report.json and report.md (temp then rename), the console's summary, wandb (one run
per report dir).
"""
import os

from engramlib.data import atomic_write, save_json
from engramlib.fsafe import regular_file

CONSOLE_SECTIONS = ('Table 3', "The paper's patterns", 'Stratified metrics')   # what the console shows of a report

def console_summary(md):
    """The report's headline sections for the console (the whole report is in report.md): a study's Table 3 and the
    patterns' verdicts, a checkpoint's metrics; the first section when none of them is there."""
    sections = md.split('\n## ')
    keep = [x for x in sections[1:] if x.startswith(CONSOLE_SECTIONS)] or sections[1:2]
    return sections[0].rstrip() + ''.join('\n\n## ' + x.rstrip() for x in keep)

def write_report(report, markdown, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    save_json(os.path.join(out_dir, 'report.json'), report)
    atomic_write(os.path.join(out_dir, 'report.md'), lambda f: f.write(markdown), mode='w')

def report_run_id(out_dir):
    """The wandb run id of a report dir: made once and kept in the dir, so writing the report again resumes its run
    (one run per report dir; re-running the quickstart no longer adds a run to upload)."""
    import uuid
    path = os.path.join(out_dir, 'wandb_run_id')
    if os.path.exists(path):
        with open(regular_file(path, 'wandb run id')) as f:
            run_id = f.read().strip()
        if run_id.isalnum():
            return run_id
    run_id = uuid.uuid4().hex[:12]
    atomic_write(path, lambda f: f.write(run_id + '\n'), mode='w')
    return run_id

def log_wandb(report, images, project, out_dir):
    import wandb
    name = os.path.basename(out_dir.rstrip('/'))
    run = wandb.init(project=project, name=name, job_type='eval', config={'report': name}, id=report_run_id(out_dir),
                     resume='allow')
    if 'table3' in report:
        cols = ['config', 'val_loss', 'val_loss_std', 'hot_cold_delta', 'tok_per_s', 'params']
        run.log({'table3': wandb.Table(columns=cols, data=[[n] + [t[c] for c in cols[1:]] for n, t in report['table3'].items()]),
                 'table4': wandb.Table(columns=['run', 'config', 'flip_iter', 'max_hot_advantage', 'max_cold_advantage'],
                                       data=[[r, f['config'], f['flip_iter'], f['max_hot_advantage'], f['max_cold_advantage']]
                                             for r, f in report['table4'].items()])})
        for n, t in report['table3'].items():
            run.summary[f'{n}/val_loss'] = t['val_loss']
    else:
        run.summary.update({k: v for k, v in report['metrics'].items() if isinstance(v, float)})
    run.log({os.path.basename(p)[:-4]: wandb.Image(p) for p in images})
    run.finish()

# -----------------------------------------------------------------------------
