"""``analyze_text``: pure-Python text analysis, heavy enough to need a core (CPU pool).

Example::

    $ jobq submit analyze_text text="the cat sat on the mat" --wait
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from typing import Any

from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from workers.registry import cpu_job
from workers.stores.kept_pages import PageKey, read_page

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
VOWEL_GROUPS = re.compile(r"[aeiouy]+")
STOPWORDS = frozenset(
    (
        "a an and are as at be but by for from has have he her his i in is it its of on or "
        "she that the their them they this to was were will with you your we our not no so if "
        "than then there these those which who whom what when where why how all any can do "
        "does did "
    ).split()
)


class NoText(ValueError):
    """analyze_text was given neither text nor a fetched page that still exists."""


def syllables(word: str) -> int:
    """A heuristic syllable count (vowel groups, silent final e), at least one."""
    groups = len(VOWEL_GROUPS.findall(word))
    if word.endswith("e") and groups > 1 and not word.endswith("le"):
        groups -= 1
    return max(1, groups)


def analyze(text: str, top: int = 10) -> dict[str, Any]:
    """Word frequencies, top terms and bigrams, and readability statistics of ``text``."""
    words = [w.lower() for w in WORD.findall(text)]
    sentences = max(1, len(SENTENCE_END.findall(text)))
    frequencies = Counter(words)
    content = Counter(w for w in words if w not in STOPWORDS and len(w) > 2)
    bigrams = Counter(
        f"{a} {b}"
        for a, b in itertools.pairwise(words)
        if a not in STOPWORDS and b not in STOPWORDS
    )
    n_words = len(words)
    n_syllables = sum(syllables(w) for w in words)
    entropy = (
        -sum((c / n_words) * math.log2(c / n_words) for c in frequencies.values()) if words else 0.0
    )
    return {
        "characters": len(text),
        "words": n_words,
        "unique_words": len(frequencies),
        "sentences": sentences,
        "lexical_diversity": round(len(frequencies) / n_words, 4) if words else 0.0,
        "mean_word_length": round(sum(map(len, words)) / n_words, 3) if words else 0.0,
        "mean_sentence_words": round(n_words / sentences, 3),
        # Flesch reading ease: higher is easier (60–70 is plain English).
        "flesch_reading_ease": round(
            206.835 - 1.015 * (n_words / sentences) - 84.6 * (n_syllables / max(1, n_words)), 2
        ),
        "entropy_bits": round(entropy, 4),
        "top_terms": content.most_common(top),
        "top_bigrams": bigrams.most_common(top),
    }


class FetchedPage(TypedDict, total=False):
    """What ``fetch_url`` returns, as the step before ``analyze_text`` in a pipeline."""

    url: str
    status: int
    bytes: int
    sha256: str
    elapsed: float
    body_key: PageKey


@cpu_job
def analyze_text(
    fetched: FetchedPage | None = None,
    /,
    text: str | None = None,
    text_key: PageKey | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """Analyze text given inline, kept by fetch_url under ``text_key``, or fetched the step before.

    In a pipeline the previous step's result (with its ``body_key``) arrives as ``fetched``.
    Only pages fetch_url kept (``jobq:body:…``) are read, never any other Redis key.
    """
    if text is None:
        key = text_key or (fetched or {}).get("body_key")
        text = read_page(key) if key else None
        if text is None:
            raise NoText("give text=, or text_key= of a page kept by fetch_url(keep_body=true)")
    result = analyze(text, top=top)
    if fetched:
        result["source"] = {k: fetched.get(k) for k in ("url", "status", "bytes", "sha256")}
    return result
