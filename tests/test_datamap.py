"""The data-side map (issue 48, tools/datamap.py) at tiny shapes: a corpus through two tokenizers, the N_hot of the paper's
hot coverages, the KN trigram on random document shares and the word-piece shares, in one JSON."""
import json

from conftest import run, write_corpus

def test_the_map_gives_each_tokenizer_the_papers_coverages_and_the_data_side_tables(tmp_path):
    docs = write_corpus(tmp_path / 'c.txt', n_docs=400)
    src = tmp_path / 'c.jsonl'
    src.write_text(''.join(json.dumps({'text': d}) + '\n' for d in docs))
    p = run(['-m', 'tools.datamap', '--corpus', f'zipf={src}', '--tokenizers', 'gpt2,bpe16k', '--out', str(tmp_path / 'map'),
             '--json', str(tmp_path / 'map.json'), '--block_size', '32', '--val_windows', '8'])
    rows = json.loads((tmp_path / 'map.json').read_text())['rows']
    assert [r['tokenizer'] for r in rows] == sorted((r['tokenizer'] for r in rows), key=['gpt2', 'bpe16k'].index)
    for tok in ('gpt2', 'bpe16k'):
        rs = [r for r in rows if r['tokenizer'] == tok]
        assert 1 <= len(rs) <= 3 and [r['n_hot'] for r in rs] == sorted({r['n_hot'] for r in rs})
        cov = [r['coverage_train_any'] for r in rs]
        assert cov == sorted(cov) and cov[0] >= 0.43 - 1e-9          # the 2-gram tier alone reaches each target
        for r in rs:
            assert [s['train_frac'] for s in r['kn_by_doc_share']] == [0.1, 0.3, 1.0]
            assert 0 <= r['in_word_hot'] <= 1 and 0 <= r['in_word_cold'] <= 1
            assert abs(r['kn_hot_cold_delta'] - (r['kn_loss_hot'] - r['kn_loss_cold'])) < 1e-9
    assert rows[0]['vocab_size'] == 50257 and rows[-1]['vocab_size'] < 16384       # a BPE trained on 400 short documents
    assert '| zipf | gpt2 (50,257) |' in p.stdout
