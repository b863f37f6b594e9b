"""The real CLIP BPE tokenizer, built offline from the vocabulary open_clip_torch ships.

The hub cannot be reached here, but open_clip_torch carries OpenAI's bpe_simple_vocab_16e6.txt.gz.
From it we write vocab.json and merges.txt exactly as OpenAI's SimpleTokenizer builds its table
(byte-level alphabet, the same with '</w>', one token per merge, then <|startoftext|> and
<|endoftext|>: 49408 tokens) and load transformers' CLIPTokenizerFast from them, so the tiny model
tokenizes like openai/clip-vit-base-patch32.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
from functools import lru_cache
from pathlib import Path

from moodboard.errors import ConfigError

logger = logging.getLogger(__name__)

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# OpenAI's SimpleTokenizer keeps merges[1 : 49152 - 256 - 2 + 1] of the file (line 0 is a header).
_MERGES_END = 49152 - 256 - 2 + 1


def clip_bpe_path() -> Path:
    """Locate bpe_simple_vocab_16e6.txt.gz inside open_clip_torch without importing open_clip.

    Importing open_clip would pull in torchvision, which the export environment does not need.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the CLIP vocabulary is missing: pip install --no-deps open-clip-torch==3.3.0"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / BPE_FILE
        if path.is_file():
            return path
    raise ConfigError(f"open_clip_torch is installed but {BPE_FILE} is not in it")


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte -> printable unicode map (the byte-level BPE alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """The CLIP token -> id table and the BPE merges, in OpenAI's order."""
    lines = gzip.decompress(clip_bpe_path().read_bytes()).decode("utf-8").split("\n")
    merges = tuple(lines[1:_MERGES_END])
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [t + "</w>" for t in alphabet]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    if len(tokens) != VOCAB_SIZE:
        raise ConfigError(f"{BPE_FILE} gave {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return {token: i for i, token in enumerate(tokens)}, merges


def write_clip_vocab(out_dir: Path) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt (the files of a hub CLIP checkpoint) into out_dir."""
    vocab, merges = clip_vocab_and_merges()
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / "vocab.json"
    merges_path = out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_clip_tokenizer(work_dir: Path):  # -> transformers.CLIPTokenizerFast
    """CLIPTokenizerFast with OpenAI's vocabulary, built from files written to work_dir."""
    from transformers import CLIPTokenizerFast

    vocab_path, merges_path = write_clip_vocab(work_dir)
    tokenizer = CLIPTokenizerFast(
        vocab_file=str(vocab_path),
        merges_file=str(merges_path),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=CONTEXT_LENGTH,
    )
    logger.debug("built CLIP tokenizer with %d tokens", len(tokenizer))
    return tokenizer
