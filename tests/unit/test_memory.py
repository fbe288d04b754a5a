"""Host RAM and pools: the allocator never hands out a page twice, and pools account exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hvsim.actors.memory import HOST, HostMemory, HostMemoryExhausted, Pool

ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, 6)),
        st.tuples(st.just("free"), st.integers(0, 6)),
        st.tuples(st.just("deposit_held"), st.integers(0, 6)),
        st.tuples(st.just("deposit_unallocated"), st.integers(0, 63)),
        st.tuples(st.just("withdraw"), st.integers(0, 6)),
    ),
    max_size=60,
)


@given(ops)
def test_allocator_hands_out_each_page_once_lowest_first(script: list[tuple[str, int]]) -> None:
    mem = HostMemory(64)
    pool = Pool(2)
    held: list[int] = []
    for op, n in script:
        if op == "alloc":
            if n > mem.host_free:
                with pytest.raises(HostMemoryExhausted):
                    mem.alloc(n)
                continue
            free_before = sorted(p for p in range(64) if mem.owner[p] == HOST and not mem.host_allocated[p])
            got = mem.alloc(n)
            assert got == free_before[:n]  # lowest first, deterministic
            assert not set(got) & set(held)
            held += got
        elif op == "free":
            mem.free(held[:n])
            del held[:n]
        elif op == "deposit_held":
            for page in held[:n]:
                mem.give_to_pool(page, pool)
            del held[:n]
        elif op == "deposit_unallocated" and mem.is_host_page(n) and not mem.host_allocated[n]:
            mem.give_to_pool(n, pool)
        elif op == "withdraw":
            for _ in range(min(n, len(pool.available))):
                held.append(mem.take_from_pool(pool))
        # Conservation: every page is host-held, host-free or in the pool, exactly once.
        assert len(held) == len(set(held))
        host_free = [p for p in range(64) if mem.owner[p] == HOST and not mem.host_allocated[p]]
        assert mem.host_free == len(host_free)
        assert sorted(held + host_free + pool.available) == list(range(64))


def test_pool_charge_is_all_or_nothing_and_release_returns_the_same_pages() -> None:
    pool = Pool(3)
    pool.available = [10, 11, 12]
    assert not pool.charge("vp:0", 4) and pool.available == [10, 11, 12] and pool.in_use == 0
    assert pool.charge("vp:0", 2) and pool.charges == {"vp:0": [11, 12]} and pool.in_use == 2
    assert pool.release("vp:0", 1) == 1 and pool.available == [10, 12] and pool.in_use == 1
    assert pool.release_all() == 1 and pool.available == [10, 12, 11] and pool.total == 3


def test_freeing_a_page_the_host_does_not_hold_is_a_host_bug() -> None:
    mem = HostMemory(8)
    with pytest.raises(ValueError, match="not an allocated host page"):
        mem.free([3])
    (page,) = mem.alloc(1)
    mem.give_to_pool(page, Pool(2))
    with pytest.raises(ValueError):
        mem.free([page])
