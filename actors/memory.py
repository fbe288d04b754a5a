"""Host RAM and per-partition memory pools, tracked page by page.

Every host page is in exactly one place: host-owned (``owner == HOST``), free in a partition's pool
(``Pool.available``), or in use by a hypervisor structure charged to a pool (``Pool.charges``). The
``owner`` array records which pool holds a page, so conservation is checkable at any instant.

Allocation failure is a value (``False`` / INSUFFICIENT_MEMORY upstream), never an exception.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable

#: ``owner`` value of a host-owned page.
PAGE_SIZE = 4096
HOST = 0


class HostMemoryExhausted(Exception):
    """The host allocator has fewer free pages than asked for (a host-side condition)."""

    def __init__(self, wanted: int, free: int) -> None:
        super().__init__(wanted, free)
        self.wanted = wanted
        self.free = free

    def __str__(self) -> str:
        return f"host allocator: {self.wanted} pages wanted, {self.free} free"


class Pool:
    """One partition's pool: free pages plus the pages each hypervisor structure holds."""

    __slots__ = ("available", "charges", "in_use", "owner_id")

    def __init__(self, owner_id: int) -> None:
        self.owner_id = owner_id
        #: Free pool pages; the most recently freed page is used (and withdrawn) first.
        self.available: list[int] = []
        #: Structure key (e.g. ``"vp:0"``) -> the pages it holds, in charge order.
        self.charges: dict[str, list[int]] = {}
        self.in_use = 0

    @property
    def total(self) -> int:
        return len(self.available) + self.in_use

    def can_charge(self, pages: int) -> bool:
        return len(self.available) >= pages

    def charge(self, key: str, pages: int) -> bool:
        """Move *pages* free pages to structure *key*; False (and no change) if short."""
        if pages <= 0:
            return True
        avail = self.available
        if len(avail) < pages:
            return False
        taken = avail[-pages:]
        del avail[-pages:]
        held = self.charges.get(key)
        if held is None:
            self.charges[key] = taken
        else:
            held.extend(taken)
        self.in_use += pages
        return True

    def charged(self, key: str) -> int:
        held = self.charges.get(key)
        return len(held) if held else 0

    def release(self, key: str, pages: int | None = None) -> int:
        """Return structure *key*'s pages (or its last *pages*) to ``available``; the count freed."""
        held = self.charges.get(key)
        if not held:
            return 0
        if pages is None or pages >= len(held):
            freed = held
            del self.charges[key]
        else:
            freed = held[-pages:]
            del held[-pages:]
        self.available.extend(freed)
        self.in_use -= len(freed)
        return len(freed)

    def release_all(self) -> int:
        freed = 0
        for key in list(self.charges):
            freed += self.release(key)
        return freed


class HostMemory:
    """Host RAM: page ownership, plus the root's page allocator (a host-side facility)."""

    def __init__(self, pages: int) -> None:
        if pages <= 0:
            raise ValueError("host RAM needs at least one page")
        self.pages = pages
        self.owner = array("q", bytes(8 * pages))  # all HOST
        self.host_allocated = bytearray(pages)
        # Lowest free page first, without a list of every page: pages >= _next_fresh were never
        # handed out; pages given back wait in the _returned heap. Both are validated lazily (a page
        # deposited while unallocated is skipped), so the two sources never hand out a page twice.
        self._next_fresh = 0
        self._returned: list[int] = []
        self._free_count = pages
        #: Bumped by every change of page ownership or mapping (checkers skip re-checking an
        #: unchanged world).
        self.version = 0
        #: How many child GPA mappings reference each host page (a mapped page cannot be deposited).
        self.mapped = array("i", bytes(4 * pages))
        self.mapped_total = 0
        #: Page contents, allocated on first write (a page never written reads as zeros).
        self.content: dict[int, bytearray] = {}

    @property
    def host_free(self) -> int:
        """Host-owned pages the allocator can still hand out."""
        return self._free_count

    def alloc(self, count: int) -> list[int]:
        """Hand out *count* host-owned, unallocated pages (lowest numbers first)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        if count > self._free_count:
            raise HostMemoryExhausted(count, self._free_count)
        out: list[int] = []
        owner, allocated, heap = self.owner, self.host_allocated, self._returned
        while len(out) < count:
            if heap and (heap[0] < self._next_fresh or self._next_fresh >= self.pages):
                page = heapq.heappop(heap)
            else:
                page = self._next_fresh
                self._next_fresh += 1
            if owner[page] == HOST and not allocated[page]:
                allocated[page] = 1
                out.append(page)
        self._free_count -= count
        return out

    def free(self, pages: Iterable[int]) -> None:
        """Give host-owned pages back to the allocator; anything else is a host bug."""
        owner, allocated = self.owner, self.host_allocated
        for page in pages:
            if not (0 <= page < self.pages) or owner[page] != HOST or not allocated[page]:
                raise ValueError(f"page {page} is not an allocated host page")
            allocated[page] = 0
            heapq.heappush(self._returned, page)
            self._free_count += 1

    def release_host_allocations(self) -> int:
        """Every page the host holds goes back to its allocator (the host process died and the
        root's kernel reclaimed its memory); returns how many."""
        held = [page for page in range(self.pages) if self.host_allocated[page]]
        self.free(held)
        return len(held)

    def is_host_page(self, page: int) -> bool:
        return 0 <= page < self.pages and self.owner[page] == HOST

    # --- contents -------------------------------------------------------------------------------
    def read(self, page: int, offset: int = 0, length: int = PAGE_SIZE) -> bytes:
        """*length* bytes of host page *page* from *offset* (within the page)."""
        data = self.content.get(page)
        return bytes(length) if data is None else bytes(data[offset : offset + length])

    def write(self, page: int, offset: int, data: bytes) -> None:
        """Write *data* into host page *page* at *offset* (within the page)."""
        if offset < 0 or offset + len(data) > PAGE_SIZE:
            raise ValueError(f"write of {len(data)} bytes at {offset} leaves the page")
        buf = self.content.get(page)
        if buf is None:
            buf = self.content[page] = bytearray(PAGE_SIZE)
        buf[offset : offset + len(data)] = data

    def zero(self, page: int) -> None:
        self.content.pop(page, None)

    def map_ref(self, page: int, delta: int) -> None:
        """A child mapping of *page* was added (+1) or removed (-1)."""
        self.mapped[page] += delta
        self.mapped_total += delta
        self.version += 1

    def give_to_pool(self, page: int, pool: Pool) -> None:
        """A deposit: the page leaves the host (and its allocator) for *pool*."""
        if self.host_allocated[page]:
            self.host_allocated[page] = 0
        else:
            self._free_count -= 1  # it was free in the allocator; its heap entry is now stale
        self.owner[page] = pool.owner_id
        pool.available.append(page)
        self.version += 1

    def take_from_pool(self, pool: Pool) -> int:
        """A withdraw: the pool's next free page returns to the host, held by the host (allocated)."""
        page = pool.available.pop()
        self.owner[page] = HOST
        self.host_allocated[page] = 1
        self.content.pop(page, None)  # withdrawn pages come back zero-filled
        self.version += 1
        return page
