"""The vectors an index bundle stores once: inside hnswlib's own index.bin, read in place.

hnswlib keeps every element's vector in its level-0 block: `elements` records of
`size_data_per_element` bytes, each [link count, links][vector: dim float32][label: uint64], after a
fixed 96-byte header (hnswlib 0.8.0, `HierarchicalNSW::saveIndex`, pinned in pyproject.toml). The
reader maps index.bin and views the vectors through numpy strides: no copy and no second file, where
bundles of format /2 stored the same floats again in vectors.npy (205 MB at 100k products of 512
dimensions). The cosine space stores the vectors the builder gave it, L2-normalised once more (a
change in the last bit at most).

hnswlib numbers its records in the order elements were inserted; with several threads two
neighbours may swap, so the records' labels are read too and, when they are not 0..n-1 in order, a
label -> record map goes with the view. Any header or label that does not fit the manifest is a
BundleError, never a wrong vector.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moodboard.errors import BundleError
from moodboard.vectors import Vector

# offsetLevel0_, max_elements_, cur_element_count, size_data_per_element_, label_offset_, offsetData_
# (size_t), maxlevel_ (int), enterpoint_node_ (uint32), maxM_, maxM0_, M_ (size_t), mult_ (double),
# ef_construction_ (size_t), as saveIndex writes them.
HEADER = struct.Struct("<QQQQQQiIQQQdQ")
FLOAT_BYTES = 4
LABEL_BYTES = 8


@dataclass(frozen=True)
class StoredVectors:
    """The vectors of index.bin: `matrix` (elements, dim) float32 in hnswlib's record order, a
    read-only view of the mapped file, and `rows` mapping a label to its record (None when record i
    holds label i, as it does for most builds)."""

    matrix: np.ndarray
    rows: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """(elements, dim)."""
        return self.matrix.shape

    def __getitem__(self, labels: np.ndarray | int) -> Vector:
        """The vectors of these labels, indexed like an array in label order (a copy for an array of
        labels, a read-only view for one label)."""
        return self.matrix[labels if self.rows is None else self.rows[labels]]


def read_stored_vectors(file: Path, *, dim: int, elements: int) -> StoredVectors:
    """Map index.bin and view its vectors; BundleError when the file does not hold `elements`
    vectors of `dim` float32 laid out as hnswlib 0.8 writes them, or its labels are not 0..n-1."""
    file = Path(file)
    try:
        with file.open("rb") as fh:
            size = fh.seek(0, 2)
            if size < HEADER.size:
                raise BundleError(f"{file} is too short for an hnswlib index ({size} bytes)")
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise BundleError(f"cannot read {file}: {exc}") from exc
    (offset_level0, _max_elements, count, record, label_offset, data_offset, *_rest) = HEADER.unpack_from(mapped, 0)
    expected_label_offset = data_offset + dim * FLOAT_BYTES
    if (count != elements or offset_level0 != 0 or label_offset != expected_label_offset
            or record != label_offset + LABEL_BYTES or HEADER.size + count * record > size):
        raise BundleError(f"{file} does not hold {elements} vectors of {dim} float32 in hnswlib's layout "
                          f"(header: {count} elements of {record} bytes, vectors at {data_offset}, labels at "
                          f"{label_offset}); the bundle was not written by this builder")
    if count == 0:
        return StoredVectors(matrix=np.zeros((0, dim), np.float32), rows=None)
    matrix = np.ndarray((count, dim), dtype="<f4", buffer=mapped, offset=HEADER.size + data_offset,
                        strides=(record, FLOAT_BYTES))
    labels = np.ndarray((count,), dtype="<u8", buffer=mapped, offset=HEADER.size + label_offset, strides=(record,))
    return StoredVectors(matrix=matrix, rows=_rows_of(labels, file))


def _rows_of(labels: np.ndarray, file: Path) -> np.ndarray | None:
    """None when record i holds label i; else the record of each label (labels must be 0..n-1)."""
    count = labels.shape[0]
    order = np.arange(count, dtype=np.uint64)
    if np.array_equal(labels, order):
        return None
    if count and int(labels.max()) >= count:
        raise BundleError(f"{file} holds a label outside 0..{count - 1}")
    rows = np.full(count, -1, dtype=np.int64)
    rows[labels.astype(np.int64)] = np.arange(count, dtype=np.int64)
    if (rows < 0).any():
        raise BundleError(f"{file} gives one label to two vectors")
    return rows
