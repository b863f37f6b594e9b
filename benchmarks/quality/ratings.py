"""Match quality from the team's ratings: precision@k and nDCG@k with confidence intervals, counts
by model, index version, category and weights, and an A/B comparison of two versions.

Ratings come from an export of the evaluations table (CSV, JSON Lines, or DynamoDB's own JSON with
typed attributes) or from the local stack's `GET /evaluations` (admin token, paginated). Each item
carries its search's context (model_fingerprint, index_version, category, weights, 0-based rank),
as `moodboard.evaluations.EvaluationStore` writes it, so nothing needs joining.

Definitions (each rating is +1 good match / -1 bad match; gain 1 for +1, 0 for -1):
- precision@k: share of +1 among ratings of results ranked above k, every (search, product, rater)
  rating counted once (the same micro-average as the Lambda's /evaluations/summary), with a Wilson
  score interval;
- nDCG@k, per search: the product's gain is the mean of its raters' gains; DCG sums gain /
  log2(rank + 2) over the served ranks below k, unrated results counting as not relevant (TREC's
  convention); the ideal DCG ranks the same rated gains best first. Searches with no +1 have no
  nDCG and are counted apart. Reported as the mean over searches with a bootstrap interval
  (searches resampled, since ratings of one search are not independent);
- A/B: searches are the units. The test is a two-sided permutation test of the difference in mean
  per-search precision@k (searches shuffled between A and B). Why: ratings of one search share a
  query, a rater and a result list, so a two-proportion z-test that treats every rating as an
  independent trial overstates significance; the permutation test needs neither independence of
  ratings nor normality. The z-test is reported too, labelled as the naive figure.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from moodboard.errors import RatingsError
from moodboard.evaluation_summary import weights_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from benchmarks.quality import metrics

logger = logging.getLogger(__name__)

DEFAULT_KS = (5, 10)
CONFIDENCE = 0.95
ALPHA = 0.05
PERMUTATIONS = 9_999
BOOTSTRAP_RESAMPLES = 2_000
SEED = 7
PAGE_SIZE = 500
HTTP_TIMEOUT = 30.0
GROUPINGS = ("model_fingerprint", "index_version", "category", "weights")
COMPARABLE = ("model_fingerprint", "index_version", "weights")
_DYNAMO_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})


class Rating(BaseModel):
    """One stored rating with the context of its search (an evaluations-table item)."""

    model_config = ConfigDict(extra="ignore")

    search_id: str = Field(min_length=1)
    product_id: str = Field(min_length=1)
    rater: str = "anonymous"
    rating: int
    score: int | None = None
    rank: int = Field(ge=0)
    model_fingerprint: str | None = None
    index_version: str | None = None
    category: str | None = None
    weights: dict[str, float | None] = Field(default_factory=dict)

    @field_validator("rating")
    @classmethod
    def _plus_or_minus_one(cls, value: int) -> int:
        if value not in (1, -1):
            raise ValueError("must be 1 or -1")
        return value

    @property
    def gain(self) -> float:
        return 1.0 if self.rating > 0 else 0.0

    def group(self, name: str) -> str | None:
        """This rating's key for one of GROUPINGS."""
        return weights_key(self.weights) if name == "weights" else getattr(self, name)


# --- reading ------------------------------------------------------------------------------------


def parse_item(raw: Mapping[str, Any]) -> Rating:
    """One exported item -> Rating. Accepts plain JSON, DynamoDB-typed attributes ({"S": ...}),
    an {"Item": ...} wrapper (DynamoDB's export to S3), JSON-encoded cells (CSV exports), `params`
    holding the weights (as on history records) and the `product_rater` sort key."""
    item = dict(raw.get("Item", raw)) if isinstance(raw.get("Item"), Mapping) else dict(raw)
    if item and all(_is_typed(v) for v in item.values()):
        from moodboard.dynamo import deserialize

        item = deserialize(item)
    item = {k: _decode_cell(v) for k, v in item.items()}
    item = {k: v for k, v in item.items() if v is not None and v != ""}
    if "product_id" not in item and isinstance(item.get("product_rater"), str):
        product, _, rater = item["product_rater"].rpartition("#")
        item.setdefault("product_id", product)
        item.setdefault("rater", rater.replace("%23", "#").replace("%25", "%"))
    if "weights" not in item and isinstance(item.get("params"), Mapping):
        params = item["params"]
        nested = params.get("weights")
        item["weights"] = dict(nested) if isinstance(nested, Mapping) else {
            k: v for k, v in params.items() if k.startswith("w_")}
    if isinstance(item.get("weights"), Mapping):
        item["weights"] = {k: _number(v) for k, v in item["weights"].items()}
    for name in ("rating", "score", "rank"):
        if name in item:
            item[name] = _integer(item[name])
    return Rating.model_validate(item)


def read_ratings(path: Path) -> list[Rating]:
    """Ratings from an export: .csv (header row), .jsonl/.ndjson (one item a line) or .json (a list,
    {"items"|"Items": [...]} as `aws dynamodb scan` prints it, or JSON lines as DynamoDB's export to
    S3 writes them), each optionally gzipped (.gz). Unreadable items are skipped with a warning;
    RatingsError when the file cannot be read or holds no rating at all."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if path.suffix.lower() == ".gz":
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RatingsError(f"cannot read ratings file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    suffix = Path(path.stem).suffix.lower() if path.suffix.lower() == ".gz" else path.suffix.lower()
    if suffix == ".csv":
        rows: Iterable[tuple[int, Any]] = ((i + 2, row) for i, row in enumerate(csv.DictReader(io.StringIO(text))))
    elif suffix in (".jsonl", ".ndjson"):
        rows = _json_lines(text, path)
    elif suffix == ".json":
        rows = _json_document_or_lines(text, path)
    else:
        raise RatingsError(f"cannot tell the format of {path}: expected .csv, .jsonl, .ndjson or .json")
    return _collect(rows, str(path))


def fetch_ratings(url: str, admin_token: str | None, *, client: Any = None,
                  filters: Mapping[str, str] | None = None, page_size: int = PAGE_SIZE) -> list[Rating]:
    """Every rating the stack's `GET /evaluations` lists (following next_cursor), with the admin
    bearer token. `url` is the stack's base URL or the /evaluations URL itself; `client` is an
    httpx.Client (tests pass one bound to the app)."""
    import httpx

    endpoint = _evaluations_url(url)
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    own = client is None
    client = client or httpx.Client(timeout=HTTP_TIMEOUT)
    items: list[Any] = []
    cursor: str | None = None
    try:
        while True:
            params = {"limit": str(page_size), **(filters or {})}
            if cursor:
                params["cursor"] = cursor
            try:
                response = client.get(endpoint, params=params, headers=headers)
            except httpx.HTTPError as exc:
                raise RatingsError(f"cannot list ratings at {endpoint}: {exc}") from exc
            if response.status_code == 401:
                raise RatingsError(f"{endpoint} refused the admin token (401): pass --admin-token or set "
                                   f"MOODBOARD_ADMIN_TOKEN")
            if response.status_code != 200:
                raise RatingsError(f"{endpoint} answered {response.status_code}: {response.text[:200]}")
            body = response.json()
            items.extend(body.get("items", []))
            cursor = body.get("next_cursor")
            if not cursor:
                break
    finally:
        if own:
            client.close()
    logger.info("fetched %d ratings from %s", len(items), endpoint)
    return _collect(enumerate(items, start=1), endpoint, allow_empty=True)


def _evaluations_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RatingsError(f"--ratings-url must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/evaluations"):
        path += "/evaluations"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _collect(rows: Iterable[tuple[int, Any]], source: str, *, allow_empty: bool = False) -> list[Rating]:
    ratings: list[Rating] = []
    skipped = 0
    for line, raw in rows:
        if not isinstance(raw, Mapping):
            skipped += 1
            logger.warning("%s item %d: not an object", source, line)
            continue
        try:
            ratings.append(parse_item(raw))
        except (ValidationError, ValueError, TypeError) as exc:
            skipped += 1
            logger.warning("%s item %d skipped: %s", source, line, _reason(exc))
    if skipped:
        logger.warning("%s: skipped %d unreadable items", source, skipped)
    if not ratings and not allow_empty:
        raise RatingsError(f"{source} holds no readable ratings ({skipped} items skipped)")
    return ratings


def _json_lines(text: str, path: Path) -> Iterable[tuple[int, Any]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                yield line, json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RatingsError(f"{path} line {line} is not JSON: {exc.msg}") from exc


def _json_document_or_lines(text: str, path: Path) -> Iterable[tuple[int, Any]]:
    """One JSON document (`aws dynamodb scan` output, a list), or JSON lines under a .json name
    (DynamoDB's export to S3 writes {"Item": ...} lines into .json.gz files)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise RatingsError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
        return _json_lines(text, path)
    return enumerate(_json_list(data, path), start=1)


def _json_list(data: Any, path: Path) -> list[Any]:
    if isinstance(data, Mapping):
        data = data.get("items", data.get("Items"))
    if not isinstance(data, list):
        raise RatingsError(f"{path} must hold a list of items or {{\"items\": [...]}}")
    return data


def _is_typed(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in _DYNAMO_TYPES


def _decode_cell(value: Any) -> Any:
    """CSV cells holding JSON objects (weights, params), typed or not, become dicts."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, Mapping) and value and all(_is_typed(v) for v in value.values()):
        from moodboard.dynamo import deserialize

        return deserialize(value)
    if _is_typed(value):
        from moodboard.dynamo import deserialize

        return deserialize({"v": value})["v"]
    return value


def _integer(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(str(p) for p in error['loc']) or 'item'}: {error['msg']}"
    return str(exc)


# --- metrics ------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy.stats.binomtest); None for no trials."""
    if trials <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_mean_interval(values: Sequence[float], *, confidence: float = CONFIDENCE,
                            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a mean (scipy.stats.bootstrap); None for fewer than two values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    from scipy.stats import bootstrap

    result = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def by_search(ratings: Iterable[Rating]) -> dict[str, list[Rating]]:
    """Ratings grouped by search id (insertion order kept)."""
    grouped: dict[str, list[Rating]] = defaultdict(list)
    for rating in ratings:
        grouped[rating.search_id].append(rating)
    return dict(grouped)


def search_precision(ratings: Sequence[Rating], k: int) -> float | None:
    """Share of +1 among one search's ratings of results ranked above k; None when none was rated."""
    top = [r for r in ratings if r.rank < k]
    return sum(r.rating > 0 for r in top) / len(top) if top else None


def search_ndcg(ratings: Sequence[Rating], k: int) -> float | None:
    """nDCG@k of one search from its ratings (see the module docstring); None without a +1."""
    gains: dict[str, list[float]] = defaultdict(list)
    ranks: dict[str, int] = {}
    for rating in ratings:
        gains[rating.product_id].append(rating.gain)
        ranks[rating.product_id] = min(rating.rank, ranks.get(rating.product_id, rating.rank))
    product_gain = {pid: float(np.mean(g)) for pid, g in gains.items()}
    served = np.zeros(k, dtype=np.float64)
    for pid, gain in product_gain.items():
        if ranks[pid] < k:
            served[ranks[pid]] = gain
    return metrics.ndcg_at_k(served, k, ideal=list(product_gain.values()))


def group_metrics(ratings: Sequence[Rating], ks: Sequence[int] = DEFAULT_KS, *, seed: int = SEED) -> dict[str, Any]:
    """Counts, micro precision@k with Wilson intervals, mean nDCG@k and per-search precision@k
    with bootstrap intervals, for one group of ratings."""
    searches = by_search(ratings)
    scores = [r.score for r in ratings if r.score is not None]
    positive = sum(r.rating > 0 for r in ratings)
    out: dict[str, Any] = {
        "ratings": len(ratings),
        "searches": len(searches),
        "raters": len({r.rater for r in ratings}),
        "positive": positive,
        "negative": len(ratings) - positive,
        "mean_score": float(np.mean(scores)) if scores else None,
        "precision_at": {},
        "search_precision_at": {},
        "ndcg_at": {},
    }
    for k in ks:
        top = [r for r in ratings if r.rank < k]
        good = sum(r.rating > 0 for r in top)
        out["precision_at"][str(k)] = _estimate(good / len(top) if top else None, wilson_interval(good, len(top)),
                                                n=len(top), method="wilson")
        per_search = [p for p in (search_precision(s, k) for s in searches.values()) if p is not None]
        out["search_precision_at"][str(k)] = _estimate(
            float(np.mean(per_search)) if per_search else None, bootstrap_mean_interval(per_search, seed=seed),
            n=len(per_search), method="bootstrap over searches")
        ndcgs = [search_ndcg(s, k) for s in searches.values()]
        kept = [v for v in ndcgs if v is not None]
        out["ndcg_at"][str(k)] = _estimate(float(np.mean(kept)) if kept else None,
                                           bootstrap_mean_interval(kept, seed=seed), n=len(kept),
                                           method="bootstrap over searches")
        out["ndcg_at"][str(k)]["searches_without_positive"] = len(ndcgs) - len(kept)
    return out


def summarize(ratings: Sequence[Rating], ks: Sequence[int] = DEFAULT_KS, *, seed: int = SEED) -> dict[str, Any]:
    """Overall metrics and the same per model fingerprint, index version, category and weights
    (largest group first)."""
    ks = sorted(set(ks))
    summary: dict[str, Any] = {"ks": ks, "overall": group_metrics(ratings, ks, seed=seed)}
    for name in GROUPINGS:
        groups: dict[str | None, list[Rating]] = defaultdict(list)
        for rating in ratings:
            groups[rating.group(name)].append(rating)
        rows = [{"key": key, **group_metrics(members, ks, seed=seed)} for key, members in groups.items()]
        summary[f"by_{name}"] = sorted(rows, key=lambda r: (-r["ratings"], r["key"] or ""))
    return summary


def _estimate(value: float | None, interval: tuple[float, float] | None, *, n: int, method: str) -> dict[str, Any]:
    return {"value": value, "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None, "n": n, "ci_method": method}


# --- A/B ----------------------------------------------------------------------------------------


def resolve_field(ratings: Sequence[Rating], a: str, b: str, field: str | None = None) -> str:
    """Which grouping the two labels are values of (model_fingerprint, index_version or weights);
    RatingsError when neither label is found or the choice is ambiguous."""
    candidates = [field] if field else list(COMPARABLE)
    found = [name for name in candidates
             if {a, b} <= {r.group(name) for r in ratings}]
    if not found:
        known = {name: sorted({str(r.group(name)) for r in ratings})[:10] for name in candidates}
        raise RatingsError(f"{a!r} and {b!r} are not both values of {' or '.join(candidates)}; known: {known}")
    if len(found) > 1:
        raise RatingsError(f"{a!r} and {b!r} are values of several fields ({', '.join(found)}): name one")
    return found[0]


def compare(ratings: Sequence[Rating], a: str, b: str, *, field: str | None = None, k: int = 10,
            alpha: float = ALPHA, permutations: int = PERMUTATIONS, seed: int = SEED) -> dict[str, Any]:
    """A/B comparison of two versions' precision@k (see the module docstring for the test)."""
    name = resolve_field(ratings, a, b, field)
    sides = {label: [r for r in ratings if r.group(name) == label] for label in (a, b)}
    per_search = {label: [p for p in (search_precision(s, k) for s in by_search(rs).values()) if p is not None]
                  for label, rs in sides.items()}
    xa, xb = (np.asarray(per_search[label], dtype=np.float64) for label in (a, b))
    result: dict[str, Any] = {
        "field": name, "a": a, "b": b, "k": k, "alpha": alpha,
        "test": "two-sided permutation test of the difference in mean per-search precision@k (searches as units)",
        "sides": {label: group_metrics(rs, [k], seed=seed) for label, rs in sides.items()},
    }
    if xa.size < 2 or xb.size < 2:
        result.update(difference=_diff(xa, xb), difference_ci=None, p_value=None, significant=False,
                      note="needs at least two rated searches on each side")
    else:
        result.update(difference=_diff(xa, xb), difference_ci=_difference_interval(xa, xb, seed),
                      p_value=_permutation_p(xa, xb, permutations, seed))
        result["significant"] = bool(result["p_value"] < alpha)
    result["naive_z_test"] = two_proportion_z_test(sides[a], sides[b], k)
    return result


def _diff(xa: np.ndarray, xb: np.ndarray) -> float | None:
    return float(xa.mean() - xb.mean()) if xa.size and xb.size else None


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _permutation_p(xa: np.ndarray, xb: np.ndarray, permutations: int, seed: int) -> float:
    from scipy.stats import permutation_test

    result = permutation_test((xa, xb), _mean_difference, vectorized=True, n_resamples=permutations,
                              alternative="two-sided", permutation_type="independent",
                              random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def _difference_interval(xa: np.ndarray, xb: np.ndarray, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return float(xa[0] - xb[0]), float(xa[0] - xb[0])
    ci = bootstrap((xa, xb), _mean_difference, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                   method="percentile", vectorized=True, random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def two_proportion_z_test(a: Sequence[Rating], b: Sequence[Rating], k: int) -> dict[str, Any]:
    """Pooled two-proportion z-test on the ratings above rank k, every rating treated as an
    independent trial (which they are not: shown for reference only)."""
    from scipy.stats import norm

    na, nb = (sum(r.rank < k for r in side) for side in (a, b))
    pa_hits, pb_hits = (sum(r.rank < k and r.rating > 0 for r in side) for side in (a, b))
    if not na or not nb:
        return {"z": None, "p_value": None, "n_a": na, "n_b": nb}
    pa, pb = pa_hits / na, pb_hits / nb
    pooled = (pa_hits + pb_hits) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    z = (pa - pb) / se if se > 0 else 0.0
    return {"z": z, "p_value": float(2 * norm.sf(abs(z))), "n_a": na, "n_b": nb,
            "precision_a": pa, "precision_b": pb}

