"""aggregator: poll feeds, collapse near-identical copies, group stories, publish feeds and digests."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/aggregator-project/aggregator"
USER_AGENT = f"aggregator/{__version__} (+{PROJECT_URL})"
