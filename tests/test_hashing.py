"""Hashes: same digests as hashlib, the existing client's directory hash."""

import hashlib

from nbank_core import hashing


def test_file_hash_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 20000  # several blocks
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert hashing.sha1_file(p) == hashlib.sha1(data).hexdigest()
    assert hashing.prefixed(hashing.sha1_file(p)).startswith("sha1:")


def test_directory_hash_is_sorted_relpath_lines(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_bytes(b"b")
    (d / "sub" / "a.txt").write_bytes(b"a")
    lines = [
        f"b.txt={hashlib.sha1(b'b').hexdigest()}",
        f"sub/a.txt={hashlib.sha1(b'a').hexdigest()}",
    ]
    expected = hashlib.sha1("\n".join(lines).encode()).hexdigest()
    assert hashing.sha1_directory(d) == expected
    assert hashing.sha1_path(d) == expected


def test_hash_many_is_parallel_and_exact(tmp_path):
    paths = []
    for i in range(20):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(str(i).encode() * 1000)
        paths.append(p)
    got = hashing.hash_many(paths, jobs=4)
    assert got == {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in paths}


def test_copy_and_hash_copies_every_byte(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x" * (3 * hashing.BLOCK_SIZE + 7))
    dst = tmp_path / "dst"
    import os

    fd = os.open(dst, os.O_WRONLY | os.O_CREAT)
    try:
        digest = hashing.copy_and_hash(src, fd)
    finally:
        os.close(fd)
    assert dst.read_bytes() == src.read_bytes()
    assert digest == hashlib.sha1(src.read_bytes()).hexdigest()
