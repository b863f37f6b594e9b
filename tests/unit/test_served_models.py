"""Models served side by side (moodboard.served_models, Runtime.served_models): the lookup of the model
a search names, and a Runtime serving a default and a compared model, each with its own index."""

from __future__ import annotations

from pathlib import Path

import pytest
from moodboard.catalog import Product
from moodboard.errors import ConfigError, FingerprintMismatch, InvalidQuery
from moodboard.runtime import CurrentIndex, Runtime
from moodboard.served_models import MAX_COMPARED, ComparedModel, ServedModels, UnknownModel
from moodboard.settings import ComparedBundle, Settings

from tests.fakes import FakeEmbedder
from tests.indexes import build_index

BASE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TRAINED = "a1b2c3ffff000011112222333344445555"
OTHER = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
LIST_URL = "https://api.example/models"


def products(category: str = "dress", n: int = 4) -> list[Product]:
    return [Product(id=f"p{i}", title=f"Product {i}", category=category, image=f"https://shop.example/p{i}.jpg")
            for i in range(n)]


def index_bundle(path: Path, embedder: FakeEmbedder, items: list[Product]) -> Path:
    """An index of `items` built with `embedder` (vectors of their titles: any vectors do)."""
    build_index(path, items, embedder.embed_texts([p.title for p in items]), fingerprint=embedder.fingerprint)
    return path


def compared(tmp_path: Path, fingerprint: str) -> ComparedModel:
    embedder = FakeEmbedder(fingerprint=fingerprint)
    folder = index_bundle(tmp_path / f"index-{fingerprint[:6]}", embedder, products())
    return ComparedModel(embedder=embedder, index=CurrentIndex(fingerprint=fingerprint, local_dir=folder,
                                                               cache_dir=tmp_path / "cache"))


def test_no_model_named_and_the_default_named_answer_from_the_default(tmp_path: Path) -> None:
    models = ServedModels([compared(tmp_path, TRAINED)])

    assert models.pick(None, default=BASE, list_url=LIST_URL) is None
    assert models.pick(BASE, default=BASE, list_url=LIST_URL) is None
    assert models.pick(BASE[:10].upper(), default=BASE, list_url=LIST_URL) is None  # hex in any case


def test_a_full_fingerprint_or_a_unique_prefix_names_a_compared_model(tmp_path: Path) -> None:
    other = compared(tmp_path, OTHER)
    models = ServedModels([compared(tmp_path, TRAINED), other])

    assert models.pick(OTHER, default=BASE, list_url=LIST_URL) is other
    assert models.pick(OTHER[:6], default=BASE, list_url=LIST_URL) is other
    assert models.pick(f"  {OTHER[:8]} ", default=BASE, list_url=LIST_URL) is other


def test_an_unknown_model_is_a_404_naming_the_list(tmp_path: Path) -> None:
    models = ServedModels([compared(tmp_path, TRAINED)])

    with pytest.raises(UnknownModel) as caught:
        models.pick("0123456789", default=BASE, list_url=LIST_URL)

    assert caught.value.status_code == 404
    assert caught.value.details == {"models_url": LIST_URL, "models": [BASE, TRAINED]}
    assert LIST_URL in caught.value.message


def test_a_short_prefix_names_nothing_and_a_shared_prefix_is_refused(tmp_path: Path) -> None:
    models = ServedModels([compared(tmp_path, TRAINED)])

    with pytest.raises(UnknownModel):
        models.pick(OTHER[:5], default=OTHER, list_url=LIST_URL)  # under 6 characters: no prefix match
    with pytest.raises(InvalidQuery) as caught:
        models.pick("a1b2c3", default=BASE, list_url=LIST_URL)  # BASE and TRAINED both start so
    assert caught.value.status_code == 422
    assert models.pick("a1b2c3ff", default=BASE, list_url=LIST_URL).fingerprint == TRAINED


def test_the_same_model_twice_or_too_many_models_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        ServedModels([compared(tmp_path, TRAINED), compared(tmp_path, TRAINED)])
    with pytest.raises(ConfigError, match=f"at most {MAX_COMPARED}"):
        ServedModels([compared(tmp_path, f"{i:02d}" + TRAINED[2:]) for i in range(MAX_COMPARED + 1)])


def two_model_runtime(tmp_path: Path, *, compared_index_model: FakeEmbedder | None = None,
                      loaded: list[str] | None = None) -> tuple[Runtime, FakeEmbedder, FakeEmbedder]:
    """A default model (BASE, its index of 4 dresses) and a compared one (TRAINED, 3 lamps), both
    fakes, loaded through the runtime's embedder loader (their names go to `loaded`)."""
    base, trained = FakeEmbedder(fingerprint=BASE), FakeEmbedder(fingerprint=TRAINED)
    default_index = index_bundle(tmp_path / "default-index", base, products("dress"))
    compared_index = index_bundle(tmp_path / "compared-index", compared_index_model or trained, products("lamp", 3))
    settings = Settings(cache_dir=tmp_path / "cache", model_dir=str(tmp_path / "base-model"),
                        index_dir=str(default_index),
                        compare_models=[ComparedBundle(model_dir=str(tmp_path / "trained-model"),
                                                       index_dir=str(compared_index))])

    def load(model_dir: Path) -> FakeEmbedder:
        if loaded is not None:
            loaded.append(model_dir.name)
        return {"base-model": base, "trained-model": trained}[model_dir.name]

    return Runtime(settings, load_embedder=load), base, trained


def test_the_runtime_serves_a_compared_model_with_its_own_index(tmp_path: Path) -> None:
    loaded: list[str] = []
    runtime, base, trained = two_model_runtime(tmp_path, loaded=loaded)

    served = runtime.served_models()
    chosen = served.pick(TRAINED[:8], default=runtime.embedder().fingerprint, list_url=LIST_URL)

    assert chosen is not None and chosen.embedder is trained
    assert chosen.index.get().manifest.model_fingerprint == TRAINED
    assert chosen.index.get().categories() == {"lamp": 3}
    assert runtime.index().manifest.model_fingerprint == BASE  # the default keeps its own index
    assert runtime.index().categories() == {"dress": 4}
    assert runtime.embedder() is base
    assert runtime.served_models() is served  # loaded once
    assert sorted(loaded) == ["base-model", "trained-model"]


def test_nothing_compared_loads_nothing(tmp_path: Path) -> None:
    loaded: list[Path] = []

    def load(path: Path) -> FakeEmbedder:
        loaded.append(path)
        return FakeEmbedder()

    runtime = Runtime(Settings(cache_dir=tmp_path / "cache"), load_embedder=load)

    assert len(runtime.served_models()) == 0
    assert loaded == []


def test_a_compared_index_built_with_another_model_is_refused(tmp_path: Path) -> None:
    runtime, _, _ = two_model_runtime(tmp_path, compared_index_model=FakeEmbedder(fingerprint=OTHER))

    chosen = runtime.served_models().pick(TRAINED, default=BASE, list_url=LIST_URL)

    assert chosen is not None
    with pytest.raises(FingerprintMismatch):
        chosen.index.get()


def test_comparing_the_default_model_with_itself_is_a_config_error(tmp_path: Path) -> None:
    base = FakeEmbedder(fingerprint=BASE)
    folder = index_bundle(tmp_path / "index", base, products())
    settings = Settings(cache_dir=tmp_path / "cache", model_dir=str(tmp_path / "m"), index_dir=str(folder),
                        compare_models=[ComparedBundle(model_dir=str(tmp_path / "m"), index_dir=str(folder))])

    with pytest.raises(ConfigError, match="default model"):
        Runtime(settings, load_embedder=lambda path: base).served_models()


def test_compared_models_come_from_one_json_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOODBOARD_COMPARE_MODELS", '[{"model_dir": "/m/base", "index_dir": "/i/base"}]')

    assert Settings().compare_models == [ComparedBundle(model_dir="/m/base", index_dir="/i/base")]


def test_the_list_shows_a_compared_model_whose_index_cannot_be_served_without_a_version(tmp_path: Path) -> None:
    from moodboard.search_service import list_models

    runtime, base, _ = two_model_runtime(tmp_path, compared_index_model=FakeEmbedder(fingerprint=OTHER))

    listed = list_models(base, runtime.index(), runtime.served_models()).models

    assert [(m.fingerprint, m.default, m.count) for m in listed] == [(BASE, True, 4), (TRAINED, False, None)]
    assert listed[1].index_version is None and listed[0].index_version == runtime.index().version
    assert listed[1].name == f"model @ {TRAINED[:6]}"  # a fake has no source
