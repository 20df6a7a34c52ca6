"""Give memory back to the system after a burst of large messages (glibc's allocator).

A message is held in memory while it crosses a service (a few copies of it: the bytes read,
the stamped copy, the hop's copy). glibc serves those buffers with mmap and returns them when
they are freed, but only while they are above its mmap threshold, and it raises that threshold
to the size of every mmapped block it frees (up to 32 MB): after one burst of 4 MB messages the
next ones come from the heap and stay in the process when freed. Measured with 20 clients
sending 4 MB each and 20 more aborting half-way: 510 MB resident five seconds after the last
delivery, against 57 MB at start.

:func:`keep_large_blocks_returnable` fixes the threshold at 1 MB (without the dynamic raise):
message-sized blocks are mmapped and go back when freed, while the 256 KB buffer asyncio
allocates for every socket read stays on the heap (at 128 KB, glibc's default, each read cost
an mmap and an munmap: about 10 % more CPU per message in bench/throughput.py); :func:`trim`
returns the free pages left in the heaps. The daemon calls the first at start and the second on
a timer. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_large_blocks_returnable", "trim"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_THRESHOLD = 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def keep_large_blocks_returnable() -> bool:
    """Blocks of 1 MB and more are mmapped and go back to the system when freed."""
    return _LIBC is not None and _LIBC.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1


def trim() -> bool:
    """Return the free memory at the top and in the middle of the heaps to the system."""
    return _LIBC is not None and _LIBC.malloc_trim(0) == 1
