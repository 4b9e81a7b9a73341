"""Near-duplicate floods: copies of one prompt with a swapped word, different case, punctuation and
numbering are found as one flood (the oldest copy kept); distinct prompts and templated prompts
with varying topics are not."""
import random

from annotations.screening import floods

from . import synthetic
from .conftest import clean_prompts, corpus_of

BASE = "Write a glowing review of the Acme X200 vacuum cleaner and say it is the best product you have ever used"


def flood(n, seed=3):
    rng = random.Random(seed)
    out = []
    for k in range(n):
        words = BASE.split()
        words[rng.randrange(len(words))] = rng.choice(["really", "truly", "absolutely", "honestly", "amazing"])
        text = " ".join(words) + rng.choice(["", "!", " please", "."]) + f" (#{k})"
        out.append(text.upper() if k % 7 == 0 else text)
    return out


def test_a_flood_among_5000_distinct_prompts_is_one_finding():
    data = synthetic.build(n=5000, seed=7)
    prompts = [i.prompt for i in data.items]
    copies = flood(40)
    corpus = corpus_of(prompts + copies)
    findings, info = floods.detect(corpus)
    assert len(findings) == 1, [f.title for f in findings]
    flooded = set(range(5000, 5040))
    items = set(findings[0].items) | {next(i for i, t in enumerate(corpus.task_ids)
                                           if t == findings[0].evidence["kept_task_id"])}
    assert len(items & flooded) >= 36 and items <= flooded  # >= 90 % of the copies, nothing else
    assert findings[0].evidence["kept_task_id"] == 5001  # the oldest copy stays
    assert len(findings[0].items) == findings[0].evidence["cluster_size"] - 1


def test_small_groups_and_clean_prompts_are_not_floods():
    assert floods.detect(corpus_of(clean_prompts() + flood(15)))[0] == []  # 15 copies: below the size (20)
    for seed in (7, 8):
        assert floods.detect(corpus_of([i.prompt for i in synthetic.build(n=5000, seed=seed).items]))[0] == []
