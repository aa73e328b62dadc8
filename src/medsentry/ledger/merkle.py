"""Merkle tree hashing, proofs and proof verification exactly as RFC 9162 §2.1 defines them.

Hashes are SHA-256 with domain separation (RFC 9162 §2.1.1): a leaf is HASH(0x00 || data), an
interior node HASH(0x01 || left || right), the empty tree HASH(""). Proofs are generated from a
`HashReader` that returns the hash of any *complete* subtree (an aligned run of 2**level leaves),
so a proof costs O(log n) reads however large the tree is.

Stored hashes are laid out in one append-only sequence in the order the Go `sumdb/tlog` package
uses (`StoredHashIndex`): after leaf n's hash come the hashes of every subtree that leaf completes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from medsentry.errors import MedsentryError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"  # RFC 9162 §2.1.1
NODE_PREFIX = b"\x01"  # RFC 9162 §2.1.1
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()

_sha256 = hashlib.sha256

# (level, index) -> hash of the complete subtree over leaves [index << level, (index + 1) << level)
HashReader = Callable[[int, int], bytes]


class ProofError(MedsentryError, ValueError):
    """A proof that does not verify, or a request for a proof that cannot exist."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0))."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    return _sha256(NODE_PREFIX + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """RFC 9162 §2.1.1: k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes by the recursive definition (a reference for tests)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = largest_power_of_two_below(n)
    return node_hash(root_of_leaves(leaf_hashes[:k]), root_of_leaves(leaf_hashes[k:]))


# --- stored hash layout (golang.org/x/mod/sumdb/tlog StoredHashIndex / StoredHashCount) ---


def stored_hash_index(level: int, n: int) -> int:
    """Position in the stored-hash sequence of the n-th complete subtree hash at `level`."""
    # Level L's n-th hash is written right after level L+1's (2n+1)-th leaf; walk down to level 0.
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def stored_hash_count(n: int) -> int:
    """How many hashes are stored for a tree of n leaves (2n - popcount(n))."""
    return 2 * n - n.bit_count()


def leaves_covered(count: int) -> int:
    """The largest tree size whose stored hashes fit in `count` stored hashes."""
    lo, hi = 0, count  # stored_hash_count(m) >= m, so m <= count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if stored_hash_count(mid) <= count:
            lo = mid
        else:
            hi = mid - 1
    return lo


def compact_range(n: int) -> list[tuple[int, int]]:
    """The complete subtrees (level, index) that make up a tree of n leaves, left to right."""
    out: list[tuple[int, int]] = []
    start = 0
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def append_leaf(frontier: list[tuple[int, bytes]], leaf: bytes, out: list[bytes]) -> None:
    """Add a leaf hash to a compact range; append the hashes to store (leaf, then completed nodes).

    `frontier` holds (level, hash) of the complete subtrees of the current tree, left to right.
    """
    h = leaf
    out.append(h)
    level = 0
    while frontier and frontier[-1][0] == level:
        h = node_hash(frontier.pop()[1], h)
        out.append(h)
        level += 1
    frontier.append((level, h))


def root_of_frontier(frontier: Sequence[tuple[int, bytes]]) -> bytes:
    """MTH of the tree whose compact range is `frontier` (fold right to left)."""
    if not frontier:
        return EMPTY_ROOT
    h = frontier[-1][1]
    for _, left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


# --- subtree hashes from complete subtrees ---


def subtree_hash(read: HashReader, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for lo < hi, where lo is aligned as RFC 9162's recursion always leaves it."""
    size = hi - lo
    if size & (size - 1) == 0 and lo % size == 0:
        return read(size.bit_length() - 1, lo // size)
    k = largest_power_of_two_below(size)
    return node_hash(subtree_hash(read, lo, lo + k), subtree_hash(read, lo + k, hi))


def root_at(read: HashReader, n: int) -> bytes:
    """MTH(D[0:n])."""
    return EMPTY_ROOT if n == 0 else subtree_hash(read, 0, n)


# --- proofs (RFC 9162 §2.1.3.1 and §2.1.4.1) ---


def inclusion_proof(read: HashReader, index: int, size: int) -> list[bytes]:
    """PATH(m, D[0:n]) of RFC 9162 §2.1.3.1, for 0 <= m < n."""
    if not 0 <= index < size:
        raise ProofError(f"no inclusion proof for entry {index} in a tree of {size} entries")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if index < lo + k:  # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(subtree_hash(read, lo + k, hi))
            hi = lo + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(subtree_hash(read, lo, lo + k))
            lo = lo + k
    path.reverse()  # the recursion emits the deepest sibling first
    return path


def consistency_proof(read: HashReader, old: int, new: int) -> list[bytes]:
    """PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true) of RFC 9162 §2.1.4.1, for 0 <= m <= n."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    out: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
                out.append(subtree_hash(read, lo, hi))
            break
        k = largest_power_of_two_below(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            out.append(subtree_hash(read, lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            out.append(subtree_hash(read, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()  # the recursion appends the outermost hashes last
    return out


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 steps 1-5: the root a proof leads to (raises if the proof is malformed)."""
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise ProofError unless `proof` shows `leaf` at `index` under `root`."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for entry {index} does not lead to the root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless tree `new` extends tree `old`."""
    if old > new:
        raise ProofError(f"old size {old} is larger than new size {new}")
    if old == new:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if old == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:  # step 1
        raise ProofError("empty consistency proof")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    path = list(proof)
    if old & (old - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != old_root or sr != new_root or sn != 0:  # step 7
        raise ProofError(f"consistency proof from size {old} to size {new} does not verify")
