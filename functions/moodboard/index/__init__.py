"""The index bundle (moved from moodboard/index.py; split by concept in the next commit)."""

from moodboard.index.product_index import *  # noqa: F403
from moodboard.index.product_index import _CategoryGraph  # noqa: F401
