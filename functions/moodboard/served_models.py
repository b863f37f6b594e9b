"""The models this process serves: the default one, and the models served next to it for comparison.

A search answers from the default model unless it names another by `model`: a served model's full
fingerprint or a prefix of it of at least MIN_PREFIX characters that no other served model shares.
Each compared model has its own embedder and its own index, built with that model (an index is only
ever searched with the model whose fingerprint it records), so the team can run an evaluation round
on each and compare the runs (moodboard.rounds). Compared models are configured by
Settings.compare_models (`moodboard serve --compare-model`); in AWS the stack serves one model, its
configured bundle, and comparing means deploying another (docs/evaluation-rounds.md).

The default model is not held here: routes get it from the overridable dependencies (`EmbedderDep`,
`IndexDep`) and hand its fingerprint to `pick`, so a search that names no model works exactly as
before and loads nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moodboard.errors import ConfigError, InvalidQuery, NotFound
from moodboard.settings import MAX_COMPARED  # models next to the default one, at most

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol
    from moodboard.runtime import CurrentIndex

# A fingerprint prefix names a model from this many characters (the short form people see).
MIN_PREFIX = 6


class UnknownModel(NotFound):
    """No model this process serves has that fingerprint (or fingerprint prefix)."""


@dataclass(frozen=True)
class ComparedModel:
    """A model served next to the default one: its embedder and the holder of its own index."""

    embedder: EmbedderProtocol
    index: CurrentIndex

    @property
    def fingerprint(self) -> str:
        return self.embedder.fingerprint

    @property
    def name(self) -> str:
        """'source @ short fingerprint', as everywhere models are named for people."""
        from moodboard.index_versions import model_label

        return model_label(self.embedder.source, self.embedder.fingerprint)


class ServedModels:
    """The compared models of a process (none in AWS), and the lookup of the model a search names."""

    def __init__(self, compared: Sequence[ComparedModel] = ()) -> None:
        if len(compared) > MAX_COMPARED:
            raise ConfigError(f"at most {MAX_COMPARED} models can be compared with the default one")
        seen: set[str] = set()
        for model in compared:
            if model.fingerprint in seen:
                raise ConfigError(f"model {model.fingerprint} is configured twice for comparison")
            seen.add(model.fingerprint)
        self.compared = tuple(compared)

    def __iter__(self) -> Iterator[ComparedModel]:
        return iter(self.compared)

    def __len__(self) -> int:
        return len(self.compared)

    def pick(self, ref: str | None, *, default: str, list_url: str) -> ComparedModel | None:
        """The model a search names by `ref`: None for the default model (fingerprint `default`, also
        when `ref` is None), else the compared model. UnknownModel (404) when no served model matches,
        InvalidQuery (422) when a prefix matches several; both name the list at `list_url`."""
        if ref is None:
            return None
        wanted = ref.strip().casefold()
        fingerprints = [default, *(model.fingerprint for model in self.compared)]
        exact = [fp for fp in fingerprints if fp.casefold() == wanted]
        matches = exact or ([fp for fp in fingerprints if fp.casefold().startswith(wanted)]
                            if len(wanted) >= MIN_PREFIX else [])
        details = {"models_url": list_url, "models": fingerprints}
        if not matches:
            raise UnknownModel(f"no served model has the fingerprint {ref!r} (see {list_url})", details=details)
        if len(matches) > 1:
            raise InvalidQuery(f"{ref!r} is the start of several served models' fingerprints: give more of it",
                               details=details)
        if matches[0] == default:
            return None
        return next(model for model in self.compared if model.fingerprint == matches[0])
