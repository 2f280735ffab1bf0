"""The content-keyed memo behind the shift suite's shared work: keys follow the pixels and parameters, values
are copies, and the least recently used value goes first."""

import numpy as np
import pytest

from zoo.content_cache import ContentCache


def test_keys_follow_bytes_dtype_shape_and_parameters():
    a = np.arange(12, dtype=np.uint8).reshape(2, 6)
    key = ContentCache.key
    assert key("f", 1, a) == key("f", 1, a.copy())  # content, not identity
    assert key("f", 1, np.asfortranarray(a)) == key("f", 1, a)  # memory layout is not content
    assert key("f", 1, a) != key("f", 2, a)
    assert key("f", 1, a) != key("f", 1, a.reshape(3, 4))
    assert key("f", 1, a) != key("f", 1, a.astype(np.int16))
    b = a.copy()
    b[1, 5] += 1
    assert key("f", 1, a) != key("f", 1, b)
    assert key("f", "1") != key("f", 1)


def test_computes_once_and_hands_out_copies():
    cache, calls = ContentCache(4), []

    def compute():
        calls.append(1)
        return np.array([1.0, 2.0])

    v = cache.get_or_compute("k", compute)
    v[0] = 99.0  # the caller's copy
    w = cache.get_or_compute("k", compute)
    assert len(calls) == 1 and w.tolist() == [1.0, 2.0] and (cache.hits, cache.misses) == (1, 1)
    w[1] = -1.0
    assert cache.get_or_compute("k", compute).tolist() == [1.0, 2.0]


def test_drops_the_least_recently_used():
    cache = ContentCache(2)
    for k in ("a", "b"):
        cache.get_or_compute(k, lambda k=k: np.array([ord(k)]))
    cache.get_or_compute("a", lambda: np.array([0]))  # a used last: b goes next
    cache.get_or_compute("c", lambda: np.array([ord("c")]))
    assert len(cache) == 2
    assert cache.get_or_compute("a", lambda: np.array([-1])).tolist() == [ord("a")]
    assert cache.get_or_compute("b", lambda: np.array([-1])).tolist() == [-1]  # recomputed
    cache.clear()
    assert len(cache) == 0 and cache.hits == cache.misses == 0
    with pytest.raises(ValueError):
        ContentCache(0)


def test_keeps_within_its_byte_budget():
    cache = ContentCache(100, max_bytes=3 * 80)  # room for three arrays of ten float64
    for k in "abcd":
        cache.get_or_compute(k, lambda: np.zeros(10))
    assert len(cache) == 3  # a went first
    big = cache.get_or_compute("big", lambda: np.zeros(31))  # over the budget on its own: returned, not kept
    assert big.shape == (31,) and len(cache) == 3
    cache.get_or_compute("big", lambda: np.zeros(31))
    assert cache.misses == 6 and cache.hits == 0
