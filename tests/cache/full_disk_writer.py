"""A cache writer that test_integrity.py runs in a subprocess with a file-size limit (a full disk).

    python full_disk_writer.py PATH LIMIT_BYTES N_FIRST N_TOTAL

It commits N_FIRST rows with no limit, then limits the size of any file it writes
to LIMIT_BYTES (``RLIMIT_FSIZE``: a write beyond it fails with EFBIG, as on a full
disk; SIGXFSZ ignored) and registers N_TOTAL ids, which rebuilds the file larger,
then writes them. With N_FIRST 0 the limit is set first, so creating the file
fails. Like the CLI, it prints a SerError as one line ``error: ...`` and exits 1;
any other exception ends in a traceback.
"""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import DIM, KEY, LAYERS, batch, utt_ids  # noqa: E402

from ssl_ser import cache  # noqa: E402
from ssl_ser.errors import SerError  # noqa: E402


def limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def main() -> None:
    path, limit, n_first, n_total = sys.argv[1], *map(int, sys.argv[2:5])
    ids = utt_ids(n_total)
    if n_first:
        with cache.CacheWriter(path, KEY, LAYERS, DIM) as writer:
            writer.add_ids(ids[:n_first])
            writer.set_manifest_digest("a" * 64)
            writer.write(ids[:n_first], batch(ids[:n_first]))
    limit_file_size(limit)
    try:
        with cache.CacheWriter(path, KEY, LAYERS, DIM) as writer:
            writer.add_ids(ids)
            writer.set_manifest_digest("b" * 64)
            todo = writer.missing(ids)
            writer.write(todo, batch(todo))
    except SerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print("done")


if __name__ == "__main__":
    main()
