"""Tokenizer parity: the runtime tokenizer (tokenizers only) gives the ids and masks transformers'
CLIPTokenizerFast gives for the same tokenizer.json, with padding to the longest and truncation to 77."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moodboard.embedder import ClipTokenizer
from moodboard.model_bundle import load_manifest

pytest.importorskip("transformers", reason="the export extra (transformers) is the reference")
from transformers import CLIPTokenizerFast  # noqa: E402

TEXTS = [
    "a photo of a dress",
    "A PHOTO OF A DRESS",
    "Red Dress, with POCKETS!!! (size: M) -- 50% off?",
    "don't stop: it's what we'll've done",
    "  leading and trailing spaces   ",
    "tabs\tand\nnew\r\nlines   and    runs of spaces",
    "café crème brûlée naïve Ångström",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ and e\u0301 combining accent",
    "東京のワンピース 连衣裙 원피스",
    "emoji 👗🔥✨ and flags 🇫🇷 and skin tones 👍🏽",
    "math ∑∫√ and symbols ©®™ § ¶ • … — –",
    "numbers 1234567890 3.14 1e-3 #hashtag @mention http://example.com/a?b=c",
    "<|endoftext|> inside the text <|startoftext|>",
    "",
    " ",
    "x",
    "boho summer maxi dress " * 30,
    "supercalifragilisticexpialidocious" * 12,
    "🙂" * 100,
]


@pytest.fixture(scope="module")
def tokenizer_json(tiny_bundle: Path) -> Path:
    return tiny_bundle / load_manifest(tiny_bundle).files.tokenizer


@pytest.fixture(scope="module")
def runtime(tiny_bundle: Path, tokenizer_json: Path) -> ClipTokenizer:
    manifest = load_manifest(tiny_bundle)
    return ClipTokenizer.from_file(
        tokenizer_json, context_length=manifest.context_length, pad_id=manifest.text.pad_id
    )


@pytest.fixture(scope="module")
def reference(tokenizer_json: Path) -> CLIPTokenizerFast:
    return CLIPTokenizerFast(tokenizer_file=str(tokenizer_json))


def hf(reference: CLIPTokenizerFast, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    out = reference(texts, padding=True, truncation=True, max_length=77, return_tensors="np")
    return out["input_ids"], out["attention_mask"]


def test_tokenizer_matches_clip_tokenizer_fast_batch(
    runtime: ClipTokenizer, reference: CLIPTokenizerFast
) -> None:
    ids, mask = runtime(TEXTS)
    ref_ids, ref_mask = hf(reference, TEXTS)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == ref_ids.shape == (len(TEXTS), 77)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_tokenizer_matches_clip_tokenizer_fast_single(
    text: str, runtime: ClipTokenizer, reference: CLIPTokenizerFast
) -> None:
    ids, mask = runtime([text])
    ref_ids, ref_mask = hf(reference, [text])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)


def test_tokenizer_pads_to_longest_in_batch_not_context_length(
    runtime: ClipTokenizer, tiny_bundle: Path
) -> None:
    ids, mask = runtime(["a dress", "a long flowing red summer dress"])
    manifest = load_manifest(tiny_bundle)
    assert ids.shape[1] == mask.sum(axis=1).max() < 77
    assert ids[0, 4:].tolist() == [manifest.text.pad_id] * (ids.shape[1] - 4)
    assert mask[0].tolist() == [1, 1, 1, 1] + [0] * (ids.shape[1] - 4)


def test_tokenizer_truncates_to_context_length_keeping_bos_and_eos(
    runtime: ClipTokenizer, tiny_bundle: Path
) -> None:
    text = TEXTS[-3]
    manifest = load_manifest(tiny_bundle)
    ids, mask = runtime([text])
    assert ids.shape == (1, 77) and mask.all()
    assert ids[0, 0] == manifest.text.bos_id and ids[0, -1] == manifest.text.eos_id


def test_tokenizer_lowercases_and_cleans_whitespace(runtime: ClipTokenizer) -> None:
    ids, _ = runtime(["Red\t\tDRESS  with Pockets", "red dress with pockets"])
    np.testing.assert_array_equal(ids[0], ids[1])


def test_tokenizer_ignores_padding_saved_in_the_file(tokenizer_json: Path, tmp_path: Path) -> None:
    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    spec["padding"] = {
        "strategy": {"Fixed": 77},
        "direction": "Left",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "!",
    }
    spec["truncation"] = None
    edited = tmp_path / "tokenizer.json"
    edited.write_text(json.dumps(spec), encoding="utf-8")
    ids, _ = ClipTokenizer.from_file(edited, context_length=77, pad_id=49407)(["a dress", "a red dress"])
    assert ids.shape == (2, 5)
    assert ids[0, -1] == 49407
    long_ids, _ = ClipTokenizer.from_file(edited, context_length=77, pad_id=49407)([TEXTS[-3]])
    assert long_ids.shape == (1, 77)


def test_tokenizer_empty_batch_gives_empty_arrays(runtime: ClipTokenizer) -> None:
    ids, mask = runtime([])
    assert ids.shape == mask.shape == (0, 0)


def test_tokenizer_rejects_a_bare_string(runtime: ClipTokenizer) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        runtime("a dress")
