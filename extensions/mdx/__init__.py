"""The MD-mix notes' proposals (MD5-derived mixing applied to model parts and inference; README "Files"), one idea per file."""
