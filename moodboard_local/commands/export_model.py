"""`moodboard export-model`: export a CLIP checkpoint (or a random one with --tiny) into a model bundle.

The exporter needs torch, transformers and optimum (the `export` extra); they are imported only
when the command runs, so registering the command costs the runtime nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

from moodboard.errors import ConfigError
from moodboard.model_bundle import ModelManifest, load_manifest
from moodboard_local.commands._common import DEFAULT_MODEL_DIR
from moodboard_local.console import console, err_console, print_note

SIZES = ("tiny", "base")
EXPORT_PACKAGES = ("torch", "transformers", "optimum", "onnx", "model_export")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-model",
        help="export a CLIP checkpoint to a model bundle (ONNX)",
        description="Export a CLIP checkpoint (Hugging Face id or local directory) into a model bundle: "
        "vision and text ONNX graphs, tokenizer, preprocessing config and a manifest with parity figures. "
        "Needs the `export` extra (torch, transformers, optimum). Offline, use --tiny.",
    )
    p.add_argument("--model", default=None, help="hub id or checkpoint directory (default openai/clip-vit-base-patch32)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit; default the latest)")
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help=f"bundle directory to write (default {DEFAULT_MODEL_DIR})")
    p.add_argument("--quantize", choices=["int8"], default=None, help="also write dynamically quantised int8 graphs")
    p.add_argument("--tiny", action="store_true", help="build a random CLIP locally (no download) and export it")
    p.add_argument("--size", choices=SIZES, default=None,
                   help="with --tiny: 'tiny' (tests, default) or 'base' (ViT-B/32 shape, for benchmarks)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = export(args)
    if args.json:
        console.print_json(json.dumps(summary))
        return 0
    if summary["tiny"]:
        print_note(f"{summary['source']} is a random model: search results will be meaningless")
    console.print(
        f"model bundle: {summary['out']}\n"
        f"  source {summary['source']}@{summary['revision']}, dim {summary['dim']}, "
        f"precisions {', '.join(summary['precisions'])}\n"
        f"  fingerprint {summary['fingerprint']}\n"
        f"  parity fp32 max abs: image {summary['parity']['fp32']['image_max_abs']:.1e}, "
        f"text {summary['parity']['fp32']['text_max_abs']:.1e}"
        + (
            f"\n  int8 mean cosine: image {summary['parity']['int8']['image_mean_cosine']:.4f}, "
            f"text {summary['parity']['int8']['text_mean_cosine']:.4f}"
            if summary["parity"].get("int8")
            else ""
        ),
        markup=False,
    )
    return 0


def export(args: argparse.Namespace) -> dict[str, Any]:
    """Run the export the arguments ask for and return its summary."""
    if args.tiny and (args.model or args.revision):
        raise ConfigError("--tiny builds its own random model: drop --model and --revision")
    if args.size and not args.tiny:
        raise ConfigError("--size only applies with --tiny")
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"export-model needs {', '.join(missing)}: install moodboard's `export` extra")
    from model_export import export as exporter

    with err_console.status("exporting the model bundle (this can take a minute)"):
        if args.tiny:
            out = exporter.export_tiny(args.out, size=args.size or "tiny", quantize=args.quantize)
        else:
            out = exporter.export_model(
                args.model or exporter.DEFAULT_MODEL, args.out, quantize=args.quantize, revision=args.revision
            )
    return summarize(load_manifest(out, verify=False), out)


def summarize(manifest: ModelManifest, out: Path) -> dict[str, Any]:
    """The few facts a user wants after an export."""
    return {
        "out": str(out),
        "source": manifest.source.id,
        "revision": manifest.source.revision,
        "tiny": manifest.tiny,
        "dim": manifest.dim,
        "precisions": manifest.precisions,
        "fingerprint": manifest.fingerprint,
        "parity": manifest.parity.model_dump(),
    }
