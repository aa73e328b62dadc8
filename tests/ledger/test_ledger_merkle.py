"""RFC 9162 hashing and proofs: published test vectors and two independent implementations.

Vectors: the RFC 6962 reference tree used by the Certificate Transparency implementations,
as published in github.com/transparency-dev/merkle (testonly/constants.go: leaf inputs, node
hashes and roots; proof/verify_test.go: inclusion and consistency proofs).
Independent implementations: pymerkle (its own RFC 9162 tree) and tlog-scales (an RFC 9162
§2.1.3.2 / §2.1.4.2 proof verifier), plus a recursive hashlib reference written here.
"""

from __future__ import annotations

import hashlib

import pymerkle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_scales.tlog import ConsistencyProof as TsConsistency
from tlog_scales.tlog import InclusionProof as TsInclusion

from medsentry.ledger import merkle


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# transparency-dev/merkle testonly/constants.go LeafInputs()
LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
# testonly/constants.go RootHashes(), index = tree size
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# testonly/constants.go NodeHashes(): [level][index]
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
# proof/verify_test.go inclusionProofs: (leaf number, 1-based; tree size; path)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# proof/verify_test.go consistencyProofs: (size1, size2, path)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


class Tree:
    """An in-memory tree over the stored-hash layout, as the ledger keeps it on disk."""

    def __init__(self, leaves: list[bytes]):
        self.stored: list[bytes] = []
        self.frontier: list[tuple[int, bytes]] = []
        self.leaf_hashes = [merkle.leaf_hash(x) for x in leaves]
        for lh in self.leaf_hashes:
            merkle.append_leaf(self.frontier, lh, self.stored)

    def read(self, level: int, index: int) -> bytes:
        return self.stored[merkle.stored_hash_index(level, index)]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH written independently with hashlib."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = reference_root(leaves[:k]), reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


TREE = Tree(LEAVES)


def test_empty_tree_and_prefixes():
    assert ROOTS[0] == merkle.EMPTY_ROOT
    assert merkle.root_at(TREE.read, 0) == ROOTS[0]
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == NODE_HASHES[0][0]
    a, b = NODE_HASHES[0][0], NODE_HASHES[0][1]
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest() == NODE_HASHES[1][0]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_vectors(size: int):
    assert merkle.root_at(TREE.read, size) == ROOTS[size]
    assert merkle.root_of_leaves(TREE.leaf_hashes[:size]) == ROOTS[size]


def test_stored_complete_subtrees_match_vector_node_hashes():
    for level, row in enumerate(NODE_HASHES):
        for index, want in enumerate(row):
            assert TREE.read(level, index) == want
    assert len(TREE.stored) == merkle.stored_hash_count(8) == 15


@pytest.mark.parametrize(("leaf", "size", "path"), INCLUSION)
def test_inclusion_vectors(leaf: int, size: int, path: list[bytes]):
    index = leaf - 1
    assert merkle.inclusion_proof(TREE.read, index, size) == path
    merkle.verify_inclusion(index, size, TREE.leaf_hashes[index], path, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, path: list[bytes]):
    assert merkle.consistency_proof(TREE.read, old, new) == path
    merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], path)


def _corruptions(path: list[bytes]) -> list[list[bytes]]:
    """The proof manglings of transparency-dev/merkle proof/verify_test.go."""
    out = [[*path, b""], [*path, ROOTS[8]], [b"", *path], [ROOTS[8], *path]]
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        out.append(bad)
    if path:
        out.append(path[:-1])
    if len(path) > 1:
        out.append([path[0], hashlib.sha256(b"x").digest(), *path[1:]])
    return out


@pytest.mark.parametrize(("leaf", "size", "path"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, path: list[bytes]):
    index, lh, root = leaf - 1, TREE.leaf_hashes[leaf - 1], ROOTS[size]
    bad_calls = [
        (index + 1, size, lh, path, root),
        (index ^ 2, size, lh, path, root),
        (index, size * 2, lh, path, root),
        (index, size // 2, lh, path, root),
        (index, size, merkle.leaf_hash(b"WrongLeaf"), path, root),
        (index, size, lh, path, ROOTS[0]),
    ] + [(index, size, lh, p, root) for p in _corruptions(path)]
    if index > 0:
        bad_calls.append((index - 1, size, lh, path, root))
    for args in bad_calls:
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(*args)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(old: int, new: int, path: list[bytes]):
    r1, r2 = ROOTS[old], ROOTS[new]
    bad_calls = [
        (old - 1, new, r1, r2, path),
        (old + 1, new, r1, r2, path),
        (old ^ 2, new, r1, r2, path),
        (old, new * 2, r1, r2, path),
        (old, new // 2, r1, r2, path),
        (old, new, hashlib.sha256(b"WrongRoot").digest(), r2, path),
        (old, new, r1, hashlib.sha256(b"WrongRoot").digest(), path),
        (old, new, r2, r1, path),
        (old, new, r1, r2, []),
    ] + [(old, new, r1, r2, p) for p in _corruptions(path)]
    for args in bad_calls:
        if args[0] == 0 or args[0] > args[1]:
            # size 0 is consistent with anything by definition; old > new must still fail
            if args[0] > args[1]:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(*args)
            continue
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(*args)


def test_trivial_consistency():
    merkle.verify_consistency(0, 0, ROOTS[0], ROOTS[0], [])
    merkle.verify_consistency(0, 5, ROOTS[0], ROOTS[5], [])
    merkle.verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(1, 1, ROOTS[1], ROOTS[1], [ROOTS[0]])


def test_stored_hash_layout_matches_tlog_definition():
    """Each stored hash sits where golang.org/x/mod/sumdb/tlog StoredHashIndex says."""
    leaves = [str(i).encode() for i in range(300)]
    tree = Tree(leaves)
    for level in range(9):
        size = 1 << level
        for index in range(300 // size):
            lo = index * size
            want = reference_root(leaves[lo : lo + size])
            assert tree.stored[merkle.stored_hash_index(level, index)] == want
    for n in range(301):
        assert merkle.stored_hash_count(n) == len(Tree(leaves[:n]).stored)
        assert merkle.leaves_covered(merkle.stored_hash_count(n)) == n


leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_random_trees_against_references(leaves: list[bytes], data: st.DataObject):
    """Roots and proofs agree with a hashlib reference, pymerkle and tlog-scales."""
    tree = Tree(leaves)
    pm = pymerkle.InmemoryTree(algorithm="sha256")
    for x in leaves:
        pm.append_entry(x)
    n = len(leaves)
    size = data.draw(st.integers(1, n), label="size")
    old = data.draw(st.integers(0, size), label="old")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = merkle.root_at(tree.read, size)
    assert root == reference_root(leaves[:size]) == pm.get_root(size)
    path = merkle.inclusion_proof(tree.read, index, size)
    merkle.verify_inclusion(index, size, tree.leaf_hashes[index], path, root)
    # pymerkle's path starts with the leaf itself, then the RFC 9162 audit path
    assert pm.prove_inclusion(index + 1, size).path[1:] == path
    TsInclusion(index, size, path).check(tree.leaf_hashes[index], root)
    cons = merkle.consistency_proof(tree.read, old, size)
    old_root = merkle.root_at(tree.read, old)
    merkle.verify_consistency(old, size, old_root, root, cons)
    TsConsistency(old, size, cons).check(old_root, root)
    if 0 < old < size:
        pymerkle.verify_consistency(pm.get_root(old), root, pm.prove_consistency(old, size))
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(old, size, old_root, hashlib.sha256(root).digest(), cons)
