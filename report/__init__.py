"""The study report: a checkpoint's deep evaluation, run dirs read back, their aggregation and the paper's patterns,
Markdown, figures and wandb. eval_stratified.py is its command line."""
