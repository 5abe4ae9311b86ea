"""
Content-defined KV reuse (MD-mix notes, idea 7): prompts that share a prefix (a system prompt, a few-shot
block) reuse its cached keys/values instead of recomputing them.

Chunk boundaries are content-defined (a boundary after every position whose last 3 tokens hash to 0 mod
`modulus`, so a prefix is cut at the same places in every prompt that contains it), each boundary gets a
chained MD-mix tag of the tokens before it, and the cache stores the KV of every boundary it has seen.
A tag is only a candidate: the stored tokens must equal the prompt's, or nothing is reused. GPT-2's
positions are absolute, so only a *prefix* (position 0 onward) can be reused exactly; a shared chunk in
the middle of a prompt would sit at other positions, and its cached KV would be wrong. Exact by
construction: the logits with reuse equal those without (tested).
"""
import torch

import mdmix
from engram import ID_BITS, ID_MASK
from layers import KVCache


class PrefixKVCache:

    def __init__(self, model, modulus=16, seed=0):
        self.model, self.modulus, self.seed = model, modulus, seed
        self.store = {}                              # tag -> (the tokens before the boundary, {layer: (k, v) up to it})

    def boundaries(self, tokens):
        """Positions b (0 < b < len) where a chunk ends: the hash of tokens[b-3:b] is 0 mod modulus."""
        t = tokens.long() & ID_MASK
        if len(t) < 4:
            return []
        key = t[2:-1] | (t[1:-2] << ID_BITS) | (t[:-3] << 2 * ID_BITS)           # the 3 tokens before b = 3..len-1
        h = mdmix.mdmix_hash(key, torch.tensor([self.seed], device=t.device), self.modulus)[:, 0]
        return (torch.nonzero(h == 0).flatten() + 3).tolist()

    def tags(self, tokens, bounds):
        """Chained tag of each boundary: MD-mix of the previous tag and a position-weighted sum of the chunk's
        tokens (wrapping int64 arithmetic)."""
        out, tag, lo = [], self.seed, 0
        for b in bounds:
            chunk = tokens[lo:b].long()
            folded = (chunk * (2 * torch.arange(len(chunk), device=chunk.device) + 1) * 0x9E3779B1).sum().view(1)
            tag = int(mdmix.mdmix_hash(folded, torch.tensor([tag], device=chunk.device), 1 << 62)[0, 0])
            out.append(tag)
            lo = b
        return out

    @torch.no_grad()
    def prefill(self, idx):
        """Logits of the last position of idx (1, T), a KVCache for it, and how many tokens were reused."""
        tokens = idx[0]
        bounds = self.boundaries(tokens)
        tags = self.tags(tokens, bounds)
        reuse = 0
        for b, tag in zip(reversed(bounds), reversed(tags)):       # the longest verified prefix
            hit = self.store.get(tag)
            if hit is not None and torch.equal(hit[0], tokens[:b]):
                reuse = b
                break
        kv = KVCache()
        if reuse:
            kv.k = {l: k for l, (k, _) in hit[1].items()}
            kv.v = {l: v for l, (_, v) in hit[1].items()}
            kv.pos = reuse
        logits = self.model(idx[:, reuse:], prev=self.model.context(idx, reuse), kv=kv)[0]
        new = [(b, tag) for b, tag in zip(bounds, tags) if b > reuse and tag not in self.store]
        if new:                                      # one copy of this prompt's KV serves all its new boundaries
            full = {l: (kv.k[l].clone(), kv.v[l].clone()) for l in kv.k}
            for b, tag in new:
                self.store[tag] = (tokens[:b].clone(), {l: (k[:, :, :b], v[:, :, :b]) for l, (k, v) in full.items()})
        return logits, kv, reuse

