"""Benchmark of the feature-cache layout: write speed and the two reads that matter.

    .venv/bin/python benchmarks/cache_bench.py [--rows 50000] [--layers 25] [--dim 1024]

In one run, on one disk, it writes ROWS x LAYERS x DIM float16 rows through
``CacheWriter`` (batches of 256 in shuffled order, committed and fsynced every
batch), then reads one layer for every row and every layer for 1,000 random
rows with the page cache dropped before each read ("cold"), and compares the
MB/s with a plain ``np.fromfile`` of the same number of bytes from a raw file
written in the same run. It repeats the writes and reads for other chunk
heights (rows per chunk) and for chunks that hold all layers of a row block,
and times row-by-row writes with HDF5's default chunk cache, to justify the
chosen layout. Cold reads drop the page cache through /proc/sys/vm/drop_caches
when permitted (root), else with posix_fadvise(DONTNEED) on the files read.

``--checksums`` times instead, in one run, the price of the integrity layout:
the same CacheWriter writes (build included) with the chunks of ssl-ser 0.1
(sparse, no checksum), allocated without checksum, and allocated with Fletcher-32
checksums (the layout used); then a cold read of one layer and the full scan of
``ser cache verify`` (every chunk read and checked) with and without checksums.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from ssl_ser import cache
from ssl_ser.cache import layout

MB = 1e6
BATCH = 256


def drop_page_cache(*paths: Path) -> str:
    """Evict files from the page cache; returns which method worked."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("1\n")
        return "drop_caches"
    except OSError:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        return "posix_fadvise"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def source_block(layers: int, dim: int) -> np.ndarray:
    """Random float32 rows reused cyclically (content does not change the speed)."""
    return np.random.default_rng(0).standard_normal((BATCH, layers, dim)).astype(np.float32)


def write_cache(path: Path, ids: list[str], layers: int, dim: int, chunk_rows: int) -> float:
    """Write every id through CacheWriter in shuffled batches; returns seconds."""
    block = source_block(layers, dim)
    order = list(np.random.default_rng(1).permutation(ids))
    names = [str(i) for i in range(layers)]
    start = time.perf_counter()
    with cache.CacheWriter(
        path, {"bench": True}, names, dim, ("mean",), chunk_rows=chunk_rows, flush_rows=BATCH
    ) as writer:
        writer.add_ids(ids)
        for offset in range(0, len(order), BATCH):
            chunk = order[offset : offset + BATCH]
            writer.write(chunk, {"mean": block[: len(chunk)]})
    os.sync()
    return time.perf_counter() - start


@contextlib.contextmanager
def chunk_layout(variant: str):
    """Build cache files as `variant`: 'sparse' (0.1), 'allocated' or 'checksummed' (today)."""
    original = layout.early_dcpl

    def variant_dcpl(chunks, fill=None, checksum=False):
        if variant == "checksummed":
            return original(chunks, fill, checksum)
        dcpl = original(chunks, fill, checksum=False)
        if variant == "sparse" and fill is not None and np.isnan(np.asarray(fill, float)).any():
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        return dcpl

    layout.early_dcpl = variant_dcpl
    try:
        yield
    finally:
        layout.early_dcpl = original


def checksum_costs(folder: Path, ids: list[str], layers: int, dim: int, repeats: int) -> None:
    """Write, read and verify times of the three chunk layouts, interleaved, best of `repeats`."""
    from ssl_ser.cache import inspection

    total_bytes = len(ids) * layers * dim * 2
    layer_bytes = len(ids) * dim * 2
    variants = ("sparse", "allocated", "checksummed")
    writes: dict[str, float] = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for variant in variants:
            path = folder / f"{variant}.h5"
            path.unlink(missing_ok=True)
            with chunk_layout(variant):
                seconds = write_cache(path, ids, layers, dim, cache.DEFAULT_CHUNK_ROWS)
            writes[variant] = min(writes[variant], seconds)
    print(f"write {len(ids)} rows through CacheWriter (build, batches of 256, fsync each):")
    for variant in variants:
        report(variant, writes[variant], total_bytes)
    base = writes["allocated"]
    print(
        f"  checksummed / allocated = {writes['checksummed'] / base:.3f}; "
        f"checksummed / sparse (0.1) = {writes['checksummed'] / writes['sparse']:.3f}"
    )
    print("read one layer cold, and verify (every chunk read and checked):")
    for variant in ("allocated", "checksummed"):
        path = folder / f"{variant}.h5"
        with cache.open(path) as reader:
            report(
                f"{variant}: read() one layer, cold",
                cold(lambda: reader.read(0), path),
                layer_bytes,
            )

        def scan(path: Path = path) -> None:
            with layout.open_h5(path, "r", rdcc_nbytes=0) as file:
                header = layout.Header.read(file, path)
                slots = file[layout.SLOT][: len(file[layout.IDS])]
                assert not inspection.corrupt_rows(file, header, slots)

        report(f"{variant}: verify scan, cold", cold(scan, path), total_bytes)
        report(f"{variant}: verify scan, warm", warm(scan), total_bytes)
    for variant in variants:
        (folder / f"{variant}.h5").unlink()


def write_slot_major(path: Path, rows: int, layers: int, dim: int, chunks: tuple) -> float:
    """Alternative layouts as a (rows, layers, dim) dataset, written in blocks of 256 rows."""
    block = source_block(layers, dim).astype(np.float16)
    start = time.perf_counter()
    with h5py.File(path, "w", libver=layout.LIBVER) as file:
        dataset = file.create_dataset(
            "x", (rows, layers, dim), "f2", dcpl=layout.early_dcpl(chunks)
        )
        for offset in range(0, rows, BATCH):
            stop = min(rows, offset + BATCH)
            dataset[offset:stop] = block[: stop - offset]
    os.sync()
    return time.perf_counter() - start


def write_row_by_row(path: Path, rows: int, layers: int, dim: int, chunk_rows: int) -> float:
    """The chosen chunks written one row per call with HDF5's default 1 MiB chunk cache."""
    row = source_block(layers, dim)[0].astype(np.float16)
    start = time.perf_counter()
    with h5py.File(path, "w", libver=layout.LIBVER) as file:
        dataset = file.create_dataset(
            "x", (layers, rows, dim), "f2", dcpl=layout.early_dcpl((1, chunk_rows, dim))
        )
        for index in range(rows):
            dataset[:, index] = row
    os.sync()
    return time.perf_counter() - start


def cold(function, path: Path, repeats: int = 3) -> float:
    """Fewest seconds of `function()` over `repeats` runs, the page cache dropped before each."""
    best = float("inf")
    for _ in range(repeats):
        drop_page_cache(path)
        best = min(best, timed(function)[0])
    return best


def warm(function, repeats: int = 3) -> float:
    """Fewest seconds of `function()` over `repeats` runs."""
    return min(timed(function)[0] for _ in range(repeats))


def raw_read_speed(folder: Path, n_bytes: int) -> float:
    """MB/s of np.fromfile over a raw file of n_bytes, cold."""
    path = folder / f"raw-{n_bytes}.bin"
    np.random.default_rng(3).integers(0, 255, n_bytes, dtype=np.uint8).tofile(path)
    seconds = cold(lambda: np.fromfile(path, dtype=np.uint8), path)
    path.unlink()
    return n_bytes / MB / seconds


def former_read(reader: cache.CacheReader, layer: int) -> np.ndarray:
    """One layer as ``read()`` read it before pieces, for comparison (same values).

    The whole float16 span read at once and cast while scattered into file order,
    then a second pass over the float32 result for NaN/inf.
    """
    dataset = reader._file["features/mean"]
    slots = reader._complete_slots
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    out = np.empty((len(slots), dataset.shape[2]), dtype=np.float32)
    first, last = int(ordered[0]), int(ordered[-1])
    out[order] = dataset[layer, first : last + 1][ordered - first]
    reader._check_finite(np.isfinite(out).all(axis=1), slots, "mean")
    return out


def cache_reads(path: Path, subset: list[str], layer: int) -> dict[str, float]:
    """Cold and warm seconds of one full layer and of all layers for `subset`.

    One layer is also read the former way (:func:`former_read`).
    """
    with h5py.File(path, "r", rdcc_nbytes=0) as file:
        dataset = file["features/mean"]
        raw_layer = cold(lambda: dataset[layer], path)
    with cache.open(path) as reader:
        assert np.array_equal(former_read(reader, layer), reader.read(layer))
        return {
            "layer_raw": raw_layer,
            "layer_former": cold(lambda: former_read(reader, layer), path),
            "layer_former_warm": warm(lambda: former_read(reader, layer)),
            "layer": cold(lambda: reader.read(layer), path),
            "layer_warm": warm(lambda: reader.read(layer)),
            "rows": cold(lambda: reader.read_rows(subset), path),
            "rows_warm": warm(lambda: reader.read_rows(subset)),
        }


def slot_major_reads(path: Path, subset_rows: np.ndarray, layer: int) -> dict[str, float]:
    """The same two reads (float16, no reordering) on a (rows, layers, dim) dataset."""
    with h5py.File(path, "r", rdcc_nbytes=0) as file:
        dataset = file["x"]
        return {
            "layer": cold(lambda: dataset[:, layer, :], path),
            "rows": cold(lambda: np.stack([dataset[i] for i in subset_rows]), path),
        }


def report(name: str, seconds: float, n_bytes: int, raw_mbs: float | None = None) -> None:
    speed = n_bytes / MB / seconds
    ratio = f"  ({speed / raw_mbs:.2f}x np.fromfile)" if raw_mbs else ""
    print(f"  {name:<46} {seconds:8.3f} s  {speed:9.0f} MB/s{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--subset", type=int, default=1000)
    parser.add_argument("--row-by-row", type=int, default=2000, help="rows written one by one")
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[256, 64, 1024])
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch folder (default: a tmp dir)"
    )
    parser.add_argument(
        "--checksums", action="store_true", help="only compare the chunk layouts' costs"
    )
    parser.add_argument("--repeats", type=int, default=3, help="--checksums: best of N")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cache-bench-", dir=args.dir))
    rows, layers, dim = args.rows, args.layers, args.dim
    ids = [f"bench/{i:06d}" for i in range(rows)]
    if args.checksums:
        print(f"{rows} rows x {layers} layers x {dim} float16; in {folder}")
        try:
            checksum_costs(folder, ids, layers, dim, args.repeats)
        finally:
            shutil.rmtree(folder)
        return
    rng = np.random.default_rng(2)
    subset_rows = np.sort(rng.choice(rows, args.subset, replace=False))
    subset = [ids[i] for i in subset_rows]
    layer = layers // 2
    layer_bytes = rows * dim * 2
    subset_bytes = args.subset * layers * dim * 2
    total_bytes = rows * layers * dim * 2
    print(f"{rows} rows x {layers} layers x {dim} float16 = {total_bytes / MB:.0f} MB; in {folder}")
    print(f"cold reads via {drop_page_cache()}")
    raw_layer = raw_read_speed(folder, layer_bytes)
    raw_subset = raw_read_speed(folder, subset_bytes)
    print(
        f"np.fromfile cold: {raw_layer:.0f} MB/s ({layer_bytes / MB:.0f} MB), "
        f"{raw_subset:.0f} MB/s ({subset_bytes / MB:.0f} MB); every timing is the best of 3"
    )
    try:
        for chunk_rows in args.chunk_rows:
            path = folder / f"c{chunk_rows}.h5"
            print(f"chunks (1 layer, {chunk_rows} rows, {dim}) via CacheWriter, layer-major:")
            seconds = write_cache(path, ids, layers, dim, chunk_rows)
            report("write (batches of 256, fsync each)", seconds, total_bytes)
            reads = cache_reads(path, subset, layer)
            report(
                "one layer, all rows, cold, float16 (h5py)",
                reads["layer_raw"],
                layer_bytes,
                raw_layer,
            )
            report(
                "one layer, all rows, cold, former read()",
                reads["layer_former"],
                layer_bytes,
                raw_layer,
            )
            report(
                "one layer, all rows, cold, read() float32", reads["layer"], layer_bytes, raw_layer
            )
            report(
                "one layer, all rows, warm, former read()", reads["layer_former_warm"], layer_bytes
            )
            report("one layer, all rows, warm, read() float32", reads["layer_warm"], layer_bytes)
            print(
                f"  read() vs former read(): {reads['layer_former'] / reads['layer']:.2f}x faster "
                f"cold, {reads['layer_former_warm'] / reads['layer_warm']:.2f}x warm"
            )
            report(
                f"all layers, {args.subset} rows, cold, read_rows()",
                reads["rows"],
                subset_bytes,
                raw_subset,
            )
            report(
                f"all layers, {args.subset} rows, warm, read_rows()",
                reads["rows_warm"],
                subset_bytes,
            )
            path.unlink()
        for name, chunks in (
            ("row-major, per-layer chunks", (BATCH, 1, dim)),
            ("row blocks holding all layers", (BATCH, layers, dim)),
        ):
            path = folder / "alt.h5"
            print(f"alternative: {name}, (rows, layers, dim) chunks {chunks}, plain h5py:")
            report(
                "write (blocks of 256)",
                write_slot_major(path, rows, layers, dim, chunks),
                total_bytes,
            )
            reads = slot_major_reads(path, subset_rows, layer)
            report("one layer, all rows, cold, float16", reads["layer"], layer_bytes, raw_layer)
            report(
                f"all layers, {args.subset} rows, cold, float16",
                reads["rows"],
                subset_bytes,
                raw_subset,
            )
            path.unlink()
        n = args.row_by_row
        print(f"row-by-row writes of {n} rows vs batched CacheWriter writes of {n} rows:")
        by_row = write_row_by_row(folder / "rows.h5", n, layers, dim, cache.DEFAULT_CHUNK_ROWS)
        batched = write_cache(folder / "batched.h5", ids[:n], layers, dim, cache.DEFAULT_CHUNK_ROWS)
        row_bytes = n * layers * dim * 2
        report("row by row, default chunk cache", by_row, row_bytes)
        report("CacheWriter, batches of 256, fsync each", batched, row_bytes)
        print(f"  row-by-row is {by_row / batched:.1f}x slower")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
