"""The study report: a checkpoint's deep evaluation, run dirs read back, their aggregation and the paper's patterns,
Markdown, figures and wandb. eval_stratified.py is its command line."""

# Tables beyond the paper's in a study report: name -> (compute(runs) -> a JSON-able table, render(table) -> Markdown
# lines). study() puts each table into report.json under its name; md_study renders it after the paper's tables.
# A new table is one entry (tests/test_settings.py registers one from outside the repo's files).
TABLES = {}
