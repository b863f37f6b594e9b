"""`moodboard train`: train a model on a catalog (CLIP fine-tuning or LiT) and export it as a bundle.

The trainer lives in model_export.train (torch, transformers: the `export` extra) and is imported
only when the command runs, so registering the command costs the runtime nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

from moodboard.errors import ConfigError
from moodboard.model_bundle import load_manifest
from moodboard_local.commands._common import DEFAULT_INDEX_DIR, DEFAULT_MODEL_DIR, positive_int
from moodboard_local.console import console, err_console, print_note

TRAIN_PACKAGES = ("torch", "transformers", "optimum", "onnx", "model_export")
DEFAULT_BASE = "openai/clip-vit-base-patch32"
EFFICIENTNET = "efficientnet-lite0"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model on a catalog (CLIP fine-tuning or LiT) into a model bundle",
        description="Train on a catalog's images and captions built from its metadata, then export the "
                    "result as a model bundle (ONNX graphs, tokenizer, preprocessing, parity check) whose "
                    "manifest records the training. finetune: CLIP's contrastive loss, all weights unfrozen. "
                    f"lit: the image tower is locked (the base CLIP's, or --base {EFFICIENTNET}: ImageNet "
                    "EfficientNet-Lite0 with a text tower trained from scratch, works offline). "
                    "Needs the `export` extra. Re-running the same command resumes from its --work dir.")
    p.add_argument("catalog", type=Path, help="catalog (.csv, .jsonl or clothing-dataset folder)")
    p.add_argument("--base", default=DEFAULT_BASE,
                   help=f"hub id or CLIP checkpoint directory (default {DEFAULT_BASE}), 'tiny-random-clip' "
                        f"(the random test model), 'random-vit-b-32' (ViT-B/32's shape, random: throughput "
                        f"checks) or, with --method lit, '{EFFICIENTNET}'")
    p.add_argument("--method", choices=["finetune", "lit"], default="lit", help="default lit")
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help=f"bundle to write (default {DEFAULT_MODEL_DIR})")
    p.add_argument("--base-out", type=Path, default=None,
                   help="also export the untrained base (CLIP bases) here, to compare with `moodboard eval --against`")
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoint and cache folder (default OUT.train); the same command resumes from it")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --work and start over")
    p.add_argument("--epochs", type=positive_int, default=20, help="most epochs (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="products per step (default 64)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 1e-5 finetune / 5e-5 lit on a pretrained CLIP; "
                        "1e-3 lit / 5e-4 finetune where a tower starts random)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default 0.1)")
    p.add_argument("--warmup", type=float, default=0.1, help="share of steps spent warming up (default 0.1)")
    p.add_argument("--patience", type=positive_int, default=4,
                   help="stop after this many epochs without a better held-out R@10 (default 4)")
    p.add_argument("--held-out", type=float, default=0.2, help="share of products held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the sampling and the init (default 0)")
    p.add_argument("--ignore-category", action="append", default=[], metavar="NAME",
                   help="leave a category out (repeatable), e.g. 'Not sure'")
    p.add_argument("--quantize", choices=["int8"], default=None, help="also write int8 graphs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = train(args)
    if args.json:
        console.print_json(json.dumps(summary, default=str))
        return 0
    print_summary(summary)
    return 0


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training the arguments ask for; returns the summary."""
    missing = [name for name in TRAIN_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"train needs {', '.join(missing)}: install moodboard's `export` extra")
    from model_export.train.trainer import TrainConfig, train as run_training

    config = TrainConfig(method=args.method, base=args.base, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, patience=args.patience,
                         held_out=args.held_out, seed=args.seed, ignore=tuple(args.ignore_category),
                         quantize=args.quantize)
    with TrainProgress(enabled=not args.json) as progress:
        out = run_training(args.catalog, args.out, config, work=args.work, base_out=args.base_out,
                           progress=progress, fresh=args.fresh)
    return summarize(out, args)


class TrainProgress:
    """A rich progress bar per phase: images, then steps with the loss and the held-out R@10."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._kind = ""
        self._held = "-"

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                      console=err_console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Any) -> None:
        if self._progress is None:
            return
        if event.kind == "phase":
            self._progress.console.print(f"train: {event.message}", markup=False)
            return
        if event.kind != self._kind or (event.message and event.kind == "images"):
            self._kind = event.kind
            label = event.message or ("training" if event.kind in ("step", "epoch") else event.kind)
            self._task = self._progress.add_task(label, total=event.steps or None, status="")
        if event.kind == "images":
            self._progress.update(self._task, advance=event.advance, total=event.steps)
        elif event.kind == "step":
            self._progress.update(self._task, completed=event.step, total=event.steps,
                                  status=f"epoch {event.epoch}/{event.epochs} loss {event.loss:.3f} "
                                         f"held-out R@10 {self._held}")
        elif event.kind == "epoch":
            self._held = f"{event.held_out.get('caption_r_at_10', 0):.3f}"
            self._progress.update(self._task, completed=event.step,
                                  status=f"epoch {event.epoch}/{event.epochs} loss {event.loss:.3f} "
                                         f"held-out R@10 {self._held}")
            self._kind = "step"


def summarize(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The facts a user wants after training, and the command that rebuilds the index with the model."""
    manifest = load_manifest(out, verify=False)
    training = manifest.training
    assert training is not None
    held = training.held_out
    load_cmd = (f"moodboard load {shlex.quote(str(args.catalog))} --model {shlex.quote(str(out))} "
                f"--out {shlex.quote(str(DEFAULT_INDEX_DIR))}")
    return {
        "out": str(out), "description": manifest.description, "source": manifest.source.id,
        "fingerprint": manifest.fingerprint, "dim": manifest.dim, "method": training.method,
        "base": training.base, "best_epoch": held.get("best_epoch"), "epochs_run": held.get("epochs_run"),
        "seconds_training": getattr(training, "seconds_training", None),
        "throughput": getattr(training, "throughput", None),
        "before": _headline(held["before"]), "after": _headline(held["after"]),
        "load_command": load_cmd, "base_out": str(args.base_out) if args.base_out else None,
        "near_copy_threshold": manifest.near_copy_threshold,
    }


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    c2p, t2p, i2i = figures["caption_to_product"], figures["type_to_product"], figures["image_to_image"]
    return {"caption_r_at_1": c2p["r_at_1"], "caption_r_at_10": c2p["r_at_10"], "caption_mrr": c2p["mrr"],
            "caption_chance_r_at_10": c2p["chance"]["r_at_10"], "type_p_at_10": t2p["p_at_10"],
            "type_chance": t2p["chance"], "image_label_agreement": i2i["label_agreement"]}


def print_summary(summary: dict[str, Any]) -> None:
    console.print(f"model bundle: {summary['out']}\n  {summary['description']}\n"
                  f"  fingerprint {summary['fingerprint']} (a new embedding space: indexes built with the base "
                  f"are refused), dim {summary['dim']}\n"
                  f"  best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
                  f"{summary['seconds_training']} s of training", markup=False)
    console.print("  held-out             before   after   (chance)", markup=False)
    before, after = summary["before"], summary["after"]
    for key, label, chance in (("caption_r_at_1", "caption R@1", None),
                               ("caption_r_at_10", "caption R@10", "caption_chance_r_at_10"),
                               ("caption_mrr", "caption MRR", None),
                               ("type_p_at_10", "type P@10", "type_chance"),
                               ("image_label_agreement", "image 10-NN labels", None)):
        console.print(f"  {label:<20} {_fmt(before[key]):>7} {_fmt(after[key]):>7}"
                      + (f"   ({_fmt(after[chance])})" if chance else ""), markup=False)
    if summary["near_copy_threshold"] is not None:
        console.print(f"  near-copy threshold {summary['near_copy_threshold']} (measured for this model's "
                      "image embeddings; searches use it unless a request or setting gives one)", markup=False)
    if summary["base_out"]:
        console.print(f"  untrained base: {summary['base_out']} (compare: moodboard eval CATALOG --model "
                      f"{summary['base_out']} --against {summary['out']})", markup=False)
    print_note("rebuild the index with this model (an index built with another model is refused):")
    console.print(f"  {summary['load_command']}", markup=False)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"
