"""The HDF5 feature cache: pooled vectors of every layer of every utterance, keyed and resumable.

The extractor computes arrays and knows no files; this package stores them and
knows no models: the key is an opaque flat dict that must match to reuse a file.

Writing::

    from ssl_ser import cache
    path = cache.cache_path(cache_dir, slug, corpus, condition)
    with cache.CacheWriter(path, key=key, layers=layers, dim=768) as writer:
        writer.add_ids(manifest.utt_id)
        writer.set_manifest_digest(digest)
        for ids, arrays in batches(writer.missing(manifest.utt_id)):
            writer.write(ids, arrays)      # {"mean": (n, layers, dim), "std": ...}
            writer.flush()                 # commit every batch
        # writer.fail(utt_id, reason) for audio that cannot be processed

Reading::

    reader = cache.open(path, key=key)
    x = reader.read("12", pooling="mean")            # (rows, dim) float32
    rows = reader.join(manifest)                     # manifest rows with features, in order
    x_rows = x[rows.cache_row]

A writer killed at any moment leaves a file that opens, with every row either
complete or redone by the next run; a second writer is refused while one runs.
Chunks and the row index carry checksums, and readers refuse what fails them
(``verify(path)`` lists it, ``writer.repair()`` sends it back to extraction; see
``docs/extract.md``). Sharded extraction (``ser extract --shard K/N``) writes shard
files beside the cache file, which :func:`shards.merge` combines into the file a
single process writes.
"""

from ssl_ser.cache.inspection import disk_size, info, notes, verify
from ssl_ser.cache.layout import (
    DEFAULT_CHUNK_ROWS,
    STORAGE_DTYPE_CHOICES,
    STORAGE_DTYPES,
    cache_path,
    key_differences,
    list_caches,
    read_header,
)
from ssl_ser.cache.reader import ROW_COLUMN, CacheReader
from ssl_ser.cache.reader import CacheReader as open  # noqa: N813 (the public spelling)
from ssl_ser.cache.writer import CacheWriter

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ROW_COLUMN",
    "STORAGE_DTYPE_CHOICES",
    "STORAGE_DTYPES",
    "CacheReader",
    "CacheWriter",
    "cache_path",
    "disk_size",
    "info",
    "key_differences",
    "list_caches",
    "notes",
    "open",
    "read_header",
    "verify",
]
