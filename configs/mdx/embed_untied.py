# Untied token embedding (its own 50,304 x 64 beside the head): +3.22M parameters over the tied reference
include('tiny_base.py')
embedding = 'untied'
out_dir = 'out/mdx/embed_untied_s0'
