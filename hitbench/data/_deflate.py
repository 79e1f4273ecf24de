"""The compiled shuffle + deflate encoder of :func:`hitbench.data.compression.encode_chunk` (numba).

Imported lazily by :mod:`hitbench.data.compression`, so importing hitbench never imports numba. One call turns a
chunk into the zlib stream HDF5's shuffle and deflate filters read back: byte k of every value is byte plane k
(HDF5's shuffle), and each plane is one deflate block with its own Huffman code (RFC 1951, dynamic block)
holding literals, and, in planes where most bytes repeat the one before, runs of them (matches at distance 1,
as zlib's ``Z_RLE``), in a zlib wrapper (RFC 1950) whose Adler-32 the caller adds (zlib's). Any inflate reads
it; nothing is read back here.
"""

from __future__ import annotations

import numba
import numpy as np

_MAX_BITS = 15  # longest literal/length code
_MAX_CL_BITS = 7  # longest code-length code
_MAX_RUN = 258  # longest match
_MIN_RUN = 3  # shortest match
_END_OF_BLOCK = 256
#: Share of a byte plane's bytes that must repeat the byte before for it to be sent with runs: below, literals
#: only (written two at a time, twice as fast as literals and runs, for ~2 % more bytes on the simulator's
#: int16 ADU frames, whose high bytes repeat at 0.57-0.67 in runs with few drifts and 0.8-0.9 in drifted ones).
RUNS_ABOVE = 0.75
#: Order in which the code-length code's lengths are sent (RFC 1951, 3.2.7).
_CL_ORDER = np.array([16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15], dtype=np.int64)
#: First match length of each length symbol 257..285 and its extra bits.
_LENGTH_BASE = np.array(
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258],
    dtype=np.int64,
)
_LENGTH_EXTRA = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0], dtype=np.int64
)


def _length_symbols() -> np.ndarray:
    """The length symbol (257..285) of every match length 0..258 (0 below the shortest match)."""
    symbols = np.zeros(_MAX_RUN + 1, dtype=np.int64)
    for k, base in enumerate(_LENGTH_BASE):
        symbols[base:] = 257 + k
    symbols[:_MIN_RUN] = 0
    return symbols


_LENGTH_SYMBOL = _length_symbols()


@numba.njit(cache=True, nogil=True)
def _code_lengths(freq: np.ndarray, max_bits: int) -> np.ndarray:
    """Huffman code lengths of ``freq``, none longer than ``max_bits``, at least two codes (a complete code).

    Minimum-redundancy lengths by Moffat and Katajainen's in-place method on the frequencies sorted ascending,
    then, where a code is too long, the length-limiting of miniz (``tdefl_huffman_enforce_max_code_size``):
    too-long codes become ``max_bits`` long and shorter ones are lengthened until Kraft's sum is one again.
    """
    n_sym = freq.size
    used = np.flatnonzero(freq)
    if used.size < 2:  # a single code must be complete: pair it with an unused symbol
        freq = freq.copy()
        for s in range(n_sym):
            if freq[s] == 0:
                freq[s] = 1
                if np.count_nonzero(freq) >= 2:
                    break
        used = np.flatnonzero(freq)
    order = used[np.argsort(freq[used], kind="mergesort")]
    n = order.size
    a = freq[order].astype(np.int64)
    # Moffat-Katajainen: a[i] becomes the depth of the i-th least frequent symbol.
    a[0] += a[1]
    root = 0
    leaf = 2
    for nxt in range(1, n - 1):
        if leaf >= n or a[root] < a[leaf]:
            a[nxt] = a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] = a[leaf]
            leaf += 1
        if leaf >= n or (root < nxt and a[root] < a[leaf]):
            a[nxt] += a[root]
            a[root] = nxt
            root += 1
        else:
            a[nxt] += a[leaf]
            leaf += 1
    a[n - 2] = 0
    for nxt in range(n - 3, -1, -1):
        a[nxt] = a[a[nxt]] + 1
    avbl, n_used, depth = 1, 0, 0
    root, nxt = n - 2, n - 1
    while avbl > 0:
        while root >= 0 and a[root] == depth:
            n_used += 1
            root -= 1
        while avbl > n_used:
            a[nxt] = depth
            nxt -= 1
            avbl -= 1
        avbl = 2 * n_used
        depth += 1
        n_used = 0
    # Limit the lengths to max_bits (Kraft's sum back to one), then give the shortest to the most frequent.
    count = np.zeros(max(max_bits, n) + 1, dtype=np.int64)
    for i in range(n):
        count[a[i]] += 1
    for bits in range(max_bits + 1, count.size):
        count[max_bits] += count[bits]
    total = 0
    for bits in range(max_bits, 0, -1):
        total += count[bits] << (max_bits - bits)
    while total != 1 << max_bits:
        count[max_bits] -= 1
        for bits in range(max_bits - 1, 0, -1):
            if count[bits]:
                count[bits] -= 1
                count[bits + 1] += 2
                break
        total -= 1
    lengths = np.zeros(n_sym, dtype=np.int64)
    j = n
    for bits in range(1, max_bits + 1):
        for _ in range(count[bits]):
            j -= 1
            lengths[order[j]] = bits
    return lengths


@numba.njit(cache=True, nogil=True)
def _codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical Huffman codes of ``lengths``, bit-reversed (deflate sends a code's first bit first)."""
    count = np.zeros(_MAX_BITS + 1, dtype=np.int64)
    for length in lengths:
        count[length] += 1
    count[0] = 0
    nxt = np.zeros(_MAX_BITS + 2, dtype=np.int64)
    code = 0
    for bits in range(1, _MAX_BITS + 1):
        code = (code + count[bits - 1]) << 1
        nxt[bits] = code
    codes = np.zeros(lengths.size, dtype=np.int64)
    for s in range(lengths.size):
        length = lengths[s]
        if length:
            c = nxt[length]
            nxt[length] += 1
            r = 0
            for _ in range(length):
                r = (r << 1) | (c & 1)
                c >>= 1
            codes[s] = r
    return codes


@numba.njit(cache=True, nogil=True, inline="always")
def _put(out: np.ndarray, pos: int, buf: int, n_bits: int, value: int, length: int) -> tuple[int, int, int]:
    """Append ``length`` (1 to 63) bits of ``value`` (non-negative), first bit lowest, without a branch.

    ``out`` holds the stream in 64-bit words (little-endian: the bytes in order), ``pos`` is the word being
    filled and ``buf`` its ``n_bits`` bits so far; the word is stored on every call, and when it is full the
    bits beyond it start the next.
    """
    buf |= value << n_bits
    out[pos] = buf
    total = n_bits + length
    full = total >> 6
    buf = ((value >> 1) >> (63 - n_bits)) if full else buf
    return pos + full, buf, total & 63


@numba.njit(cache=True, nogil=True)
def planes(values: np.ndarray) -> np.ndarray:
    """The byte planes of ``values`` (HDF5's shuffle): row k holds byte k of every value in memory.

    ``values`` are the chunk's values seen as unsigned integers of their size (flat), on a little-endian host
    (byte k in memory is bits 8k to 8k + 7); one vectorised pass per plane.
    """
    itemsize = values.itemsize
    planes = np.empty((itemsize, values.size), dtype=np.uint8)
    for k in range(itemsize):
        for i in range(values.size):
            planes[k, i] = (values[i] >> (8 * k)) & 0xFF
    return planes


@numba.njit(cache=True, nogil=True)
def _repeats(plane: np.ndarray) -> int:
    """How many bytes of a byte plane equal the byte before them."""
    count = 0
    for i in range(1, plane.size):
        count += plane[i] == plane[i - 1]
    return count


@numba.njit(cache=True, nogil=True)
def _byte_counts(plane: np.ndarray, freq: np.ndarray) -> None:
    """Add the byte values of a plane to ``freq`` (four interleaved tables: no chain through one count)."""
    tables = np.zeros((4, 256), dtype=np.int64)
    for i in range(plane.size):
        tables[i & 3, plane[i]] += 1
    for k in range(4):
        freq[:256] += tables[k]


@numba.njit(cache=True, nogil=True)
def _put_literals(
    out: np.ndarray, pos: int, buf: int, n_bits: int, plane: np.ndarray, codes: np.ndarray, lengths: np.ndarray
) -> tuple[int, int, int]:
    """Append a byte plane as literals, four per bit write (at most 60 bits)."""
    n = plane.size
    whole = n - n % 4
    for i in range(0, whole, 4):
        a, b, c, d = plane[i], plane[i + 1], plane[i + 2], plane[i + 3]
        la, lb, lc = lengths[a], lengths[b], lengths[c]
        value = codes[a] | (codes[b] << la) | (codes[c] << (la + lb)) | (codes[d] << (la + lb + lc))
        pos, buf, n_bits = _put(out, pos, buf, n_bits, value, la + lb + lc + lengths[d])
    for i in range(whole, n):
        pos, buf, n_bits = _put(out, pos, buf, n_bits, codes[plane[i]], lengths[plane[i]])
    return pos, buf, n_bits


@numba.njit(cache=True, nogil=True)
def _tokens(plane: np.ndarray, symbols: np.ndarray, runs: np.ndarray) -> int:
    """Literals and runs of a byte plane: symbol and run length of each.

    Each literal is followed by as many matches of it at distance 1 as its repeats fill, none shorter than three
    bytes (fewer repeats are sent as literals). Whether three repeats follow is one test without a branch, so
    noisy planes, where few do, cost little.
    """
    n = plane.size
    n_tok = 0
    i = 0
    while i < n:
        value = plane[i]
        symbols[n_tok] = value
        runs[n_tok] = 0
        n_tok += 1
        i += 1
        while i + _MIN_RUN <= n and ((plane[i] == value) & (plane[i + 1] == value) & (plane[i + 2] == value)):
            run = _MIN_RUN
            while run < _MAX_RUN and i + run < n and plane[i + run] == value:
                run += 1
            symbols[n_tok] = _LENGTH_SYMBOL[run]
            runs[n_tok] = run
            n_tok += 1
            i += run
    return n_tok


@numba.njit(cache=True, nogil=True)
def deflate(planes: np.ndarray) -> np.ndarray:
    """The zlib stream of byte planes (:func:`planes`), but for its Adler-32 (the caller's, over the planes' bytes).

    Parameters
    ----------
    planes : numpy.ndarray of uint8, shape (itemsize, n)
        The chunk's bytes shuffled: row k holds byte k of every value.

    Returns
    -------
    numpy.ndarray of uint8
        The zlib header and one dynamic deflate block per byte plane.
    """
    itemsize, n = planes.shape
    out = np.empty((2 * planes.size + 1024 * itemsize) // 8 + 16, dtype=np.int64)
    # zlib header: 0x78 (deflate, 32 KiB window), 0x01 (fastest, no dictionary; 0x7801 is a multiple of 31)
    pos, buf, n_bits = _put(out, 0, 0, 0, 0x0178, 16)
    symbols = np.empty(n, dtype=np.int32)
    runs = np.empty(n, dtype=np.int32)
    extra_bits = np.zeros(286, dtype=np.int64)  # after a length's code: its extra bits, then distance code 0
    extra_bits[257:] = _LENGTH_EXTRA + 1  # (distance 1), whose one-bit code is 0
    base = np.zeros(286, dtype=np.int64)
    base[257:] = _LENGTH_BASE
    for plane in range(itemsize):
        with_runs = _repeats(planes[plane]) > RUNS_ABOVE * n
        freq = np.zeros(286, dtype=np.int64)
        freq[_END_OF_BLOCK] = 1
        n_tok = 0
        if with_runs:
            n_tok = _tokens(planes[plane], symbols, runs)
            for t in range(n_tok):
                freq[symbols[t]] += 1
        else:
            _byte_counts(planes[plane], freq)
        lit_lengths = _code_lengths(freq, _MAX_BITS)
        lit_codes = _codes(lit_lengths)
        n_lit = 257
        for sym in range(286):
            if lit_lengths[sym]:
                n_lit = max(n_lit, sym + 1)
        # Code lengths sent: n_lit literal/length codes, then one distance code (distance 1) of one bit.
        sent = np.zeros(n_lit + 1, dtype=np.int64)
        sent[:n_lit] = lit_lengths[:n_lit]
        sent[n_lit] = 1
        cl_freq = np.zeros(19, dtype=np.int64)
        for length in sent:
            cl_freq[length] += 1
        cl_lengths = _code_lengths(cl_freq, _MAX_CL_BITS)
        cl_codes = _codes(cl_lengths)
        n_cl = 4
        for k in range(19):
            if cl_lengths[_CL_ORDER[k]]:
                n_cl = max(n_cl, k + 1)
        final = 1 if plane == itemsize - 1 else 0
        pos, buf, n_bits = _put(out, pos, buf, n_bits, final | (2 << 1), 3)  # BFINAL, BTYPE = dynamic
        pos, buf, n_bits = _put(out, pos, buf, n_bits, (n_lit - 257) | (0 << 5) | ((n_cl - 4) << 10), 14)
        for k in range(n_cl):
            pos, buf, n_bits = _put(out, pos, buf, n_bits, cl_lengths[_CL_ORDER[k]], 3)
        for length in sent:
            pos, buf, n_bits = _put(out, pos, buf, n_bits, cl_codes[length], cl_lengths[length])
        if with_runs:
            for t in range(n_tok):
                sym = symbols[t]
                extra = (runs[t] - base[sym]) << lit_lengths[sym]  # 0 for literals
                pos, buf, n_bits = _put(
                    out, pos, buf, n_bits, lit_codes[sym] | extra, lit_lengths[sym] + extra_bits[sym]
                )
        else:
            pos, buf, n_bits = _put_literals(out, pos, buf, n_bits, planes[plane], lit_codes, lit_lengths)
        pos, buf, n_bits = _put(out, pos, buf, n_bits, lit_codes[_END_OF_BLOCK], lit_lengths[_END_OF_BLOCK])
    out[pos] = buf  # the last bits, padded to a whole byte
    return out.view(np.uint8)[: 8 * pos + (n_bits + 7) // 8]
