"""Story grouping with sentence embeddings (the optional extra ``aggregator[embeddings]``).

What a user sees: two headlines about one event that share no word end up in one story with
embeddings where the lexical default splits them; asking for embeddings without the extra
is a problem in feeds.yaml, named by its line, with the command that fixes it; each text is
embedded once per process however often it is regrouped.  The tests that need the model run
the real one (all-MiniLM-L6-v2 from the extra) and are skipped, with the reason, when the
extra is not installed, unless ``AGGREGATOR_REQUIRE_EMBEDDINGS=1`` makes that a failure.
The headlines are real (bench/data, CC BY 4.0).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator import embeddings
from aggregator.cli import app
from aggregator.config import check_config, load_config
from aggregator.pipeline import story_settings
from aggregator.stories import StorySettings, group_stories
from aggregator.types import Entry, StoredEntry

NOW = datetime(2014, 4, 17, tzinfo=UTC)
EXTRA_MISSING = embeddings.missing_extra()
REQUIRE_EMBEDDINGS = os.environ.get("AGGREGATOR_REQUIRE_EMBEDDINGS") == "1"

# One story of 2014-04-16 in two wordings that share no word once "China"/"Chinese" and
# "18-Month"/"18 months" are tokens apart; the other headlines are other stories of that day.
CHINA = ("China's Economic Growth Drops to 18-Month Low", "Chinese GDP falls to lowest level in 18 months")
OTHERS = (
    "Yahoo reports modest revenue growth in Q1",
    "Intel reports slightly better than expected profits for Q1 2014",
    "Blood moon lunar eclipse",
    "Google Glass one day sale",
    "Paul Walker's brothers fill in for him in Fast & Furious 7",
)

CONFIG = """\
feeds:
  - url: https://news.example/feed.xml
newsletters: []
stories:
  method: embeddings
"""


def headline(entry_id: str, title: str, hours_ago: float) -> StoredEntry:
    moment = NOW - timedelta(hours=hours_ago)
    entry = Entry(guid=entry_id, url=None, canonical_url=None, title=title, published=moment)
    return StoredEntry(
        id=entry_id,
        feed_url="https://news.example/feed.xml",
        entry=entry,
        first_seen=moment,
        last_updated=moment,
    )


def the_day() -> list[StoredEntry]:
    titles = [*CHINA, *OTHERS]
    return [headline(f"e{number}", title, hours_ago=number) for number, title in enumerate(titles)]


@pytest.fixture
def extra() -> None:
    """Skip, with the reason, when the extra is missing; fail instead with AGGREGATOR_REQUIRE_EMBEDDINGS=1."""
    if EXTRA_MISSING is not None:
        reason = f"the embeddings extra is not installed: {EXTRA_MISSING}"
        if REQUIRE_EMBEDDINGS:
            pytest.fail(f"{reason} (AGGREGATOR_REQUIRE_EMBEDDINGS=1)")
        pytest.skip(reason)


@pytest.fixture
def without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extra as missing: for real when it is not installed, else with torch hidden from imports.

    ``sys.modules[name] = None`` is how Python itself marks a module as not importable;
    nothing of the project is replaced.
    """
    if EXTRA_MISSING is None:
        monkeypatch.setitem(sys.modules, "torch", None)


def test_config_check_names_the_line_and_the_fix_when_the_extra_is_missing(
    tmp_path: Path, without_extra: None
) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG, encoding="utf-8")

    (problem,) = check_config(config)
    assert (problem.line, problem.location) == (5, "stories.method")
    assert "pip install 'aggregator[embeddings]'" in problem.message

    result = CliRunner().invoke(app, ["--config", str(config), "config", "check"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "feeds.yaml:5:3: stories.method: 'embeddings' needs the optional extra" in result.stderr
    # A run refuses the config the same way, before doing anything.
    run = CliRunner().invoke(app, ["--config", str(config), "poll"], catch_exceptions=False)
    assert run.exit_code == 2
    assert "pip install 'aggregator[embeddings]'" in run.stderr


def test_asking_for_embeddings_without_the_extra_raises_a_clear_error(without_extra: None) -> None:
    with pytest.raises(embeddings.EmbeddingsUnavailable, match=r"pip install 'aggregator\[embeddings\]'"):
        embeddings.story_settings()


def test_an_unknown_method_is_a_config_problem(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG.replace("embeddings", "bert"), encoding="utf-8")
    (problem,) = check_config(config)
    assert (problem.line, problem.location) == (5, "stories.method")
    assert "'lexical' or 'embeddings'" in problem.message


def test_lexical_is_the_default(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG.partition("stories:")[0], encoding="utf-8")
    assert story_settings(load_config(config).config) == StorySettings()


@pytest.mark.usefixtures("extra")
def test_config_with_embeddings_groups_with_them(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert check_config(config) == []
    settings = story_settings(load_config(config).config)
    assert isinstance(settings.vectorizer, embeddings.JoinedVectorizer)


@pytest.mark.usefixtures("extra")
def test_one_event_in_other_words_is_one_story_with_embeddings_only() -> None:
    day = the_day()
    china = {"e0", "e1"}

    lexical = group_stories(day, {}, StorySettings(), now=NOW).assignments
    assert lexical["e0"] != lexical["e1"], "the lexical default was expected to split these"

    grouped = group_stories(day, {}, embeddings.story_settings(), now=NOW).assignments
    story = {entry_id for entry_id, story in grouped.items() if story == grouped["e0"]}
    assert story == china, "the China story should hold both wordings and nothing else"


@pytest.mark.usefixtures("extra")
def test_each_text_is_embedded_once_however_often_it_is_regrouped() -> None:
    encoder = embeddings.TextEncoder()
    settings = replace(embeddings.story_settings(), vectorizer=embeddings.JoinedVectorizer(encoder=encoder))
    day = the_day()

    first = group_stories(day[:4], {}, settings, now=NOW)
    assert encoder.encoded == 4
    second = group_stories(day, first.assignments, settings, now=NOW)
    assert encoder.encoded == len(day)  # only the three new headlines were embedded
    group_stories(day, second.assignments, settings, now=NOW)
    assert encoder.encoded == len(day)


@pytest.mark.usefixtures("extra")
def test_embeddings_are_unit_length_and_an_empty_text_has_none() -> None:
    vectors = embeddings.JoinedVectorizer()(
        [
            Entry(guid="a", url=None, canonical_url=None, title=CHINA[0]),
            Entry(guid="b", url=None, canonical_url=None, title=""),
        ]
    )
    rows = vectors.toarray()
    assert abs(float(rows[0] @ rows[0]) - 1.0) < 1e-5
    assert not rows[1].any()


@pytest.mark.usefixtures("extra")
def test_run_once_on_the_bundled_sample_with_embeddings(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "seeds", tmp_path / "seeds")
    config = tmp_path / "feeds.yaml"
    config.write_text(
        (root / "feeds.yaml").read_text(encoding="utf-8") + "\nstories:\n  method: embeddings\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    exported = runner.invoke(
        app, ["--config", str(config), "export", "--format", "jsonl"], catch_exceptions=False
    )
    story_of = {(e["feed"], e["guid"]): e["story"] for e in map(json.loads, exported.stdout.splitlines())}
    labels = json.loads((root / "tests" / "seed_labels.json").read_text(encoding="utf-8"))

    stories: dict[str, set[str]] = {}
    for label in labels["entries"]:
        stories.setdefault(label["story"], set()).add(story_of[(label["feed"], label["guid"])])
    assert len(stories["alaska-summit"]) == 1, "the Alaska summit pieces split"
    others = {story for name, ids in stories.items() if name != "alaska-summit" for story in ids}
    assert stories["alaska-summit"].isdisjoint(others), "another article joined the summit story"
