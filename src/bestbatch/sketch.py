"""Sketched gradients: each g_k projected, as it is formed, to d values by a seeded sparse random projection.

S: R^P -> R^d is a sparse Johnson-Lindenstrauss transform in its block form (Kane & Nelson 2014): the d
buckets are cut into s blocks of about d/s; coordinate i goes to one bucket of each block, with a sign, so
column i of S holds s nonzeros +-1/sqrt(s) in s distinct rows (s = 1 is CountSketch). S is linear, so the
sketch of g_bar = (1/K) sum_k g_k is the mean of the rows' sketches, and every distance, norm, cosine and Gram
entry of the K sketched rows comes out of the exact study's reduction (distances.reduce_rows).

The hash. Bucket and sign of (i, r) come from a counter-based hash of the coordinate index i, keyed by
(seed, P, d, s, r): h = mix(mix(i ^ k1) ^ k2), mix the 32-bit "lowbias32" finalizer (C. Wellons' hash
prospector), k1, k2 from splitmix64. It is computed in torch int64 arithmetic in which no intermediate exceeds
2^63 (a 32-bit product is taken as two 16 x 32-bit products), so it is exactly defined and the same on the CPU
and on CUDA, for any block of coordinates. The bucket is the multiply-shift (h >> 1) * m >> 31 into the
block's m buckets, the sign h's lowest bit. On CUDA it is recomputed for each block (a few int64 passes); on
the CPU, where recomputing it made a ResNet18 gradient's sketch ~5x slower (3.9 s against 0.8 s with it kept,
benchmarks/sketch.py), it is computed once per projection and kept: 4 s P bytes (int32), 176 MB for ResNet18
at s = 4 and 544 MB for DPN92; cache=False turns that off.

The accumulation is exact, in integers. A float32 value is M 2^(t - 149), M < 2^24 an integer, t in
[0, 253] (its bits, read as an integer: subnormals included); a float64 value is cut into three such pieces
(24 + 24 + 5 bits of its mantissa; below 2^-149, float32's smallest step, it is truncated toward zero:
an absolute error under 2^-149 per coordinate). Each piece is added, as the integer M << (t mod 8), to one of
32 int64 "digits" of its bucket (digit t // 8, worth 2^(8 (t // 8) - 149)), in a half of the bucket for each
sign. Integer addition is associative, so index_add_'s order (threads on the CPU, atomics on CUDA, where
float atomics would make the sums change from run to run) cannot change a bit: the sketch is the same to the
bit on every run, on the CPU and on CUDA, for any block size and any split of the row into pieces (a
network's parameter tensors, one at a time), whatever torch.use_deterministic_algorithms says; a float32 row
and the same row as float64 give the same bits. value() carries the digits into a canonical form and rounds
the exact sum once to float64 (summing its exact terms from the top: within ~1 ulp, the same operations in
the same order on either device), then scales by 1/sqrt(s). No overflow: a digit receives at most 3P addends
below 2^31, so P < 2^30.

The error (sketch_bound): for one vector x, E ||Sx||^2 = ||x||^2 and Var ||Sx||^2 = 2 (||x||^4 -
||x||_4^4) / d exactly, for any s, if the hash is a random function: the mean and variance of a dense
Gaussian projection (2 ||x||^4 / d). The bound printed is the Gaussian one (chi-square Chernoff tails, a
union bound over the lengths the page uses); for this sparse S it is what the sketch meets when no coordinate
holds a noticeable share of x's squared length (the gradients of networks of millions of parameters); it is
not a theorem for every x at s = 4 (see sketch_bound), and tests/test_sketch.py measures it.

PyTorch is imported where a projection runs: the reduction and the bound (what a page needs) import no torch.
"""

import math

import numpy as np

from .distances import reduce_rows

M32, M64 = (1 << 32) - 1, (1 << 64) - 1
# a value's piece M 2^(t - 149), t in [0, 253], is added as M << (t % 8) to digit t // 8 (of 32), worth
# 2^(8 (t // 8) - 149): 8 = 2^DIGIT_SHIFT bits a digit
DIGIT_SHIFT, DIGITS = 3, 32
DIGIT_BITS = 1 << DIGIT_SHIFT
TINY = 149  # 2^-149: float32's smallest step, the value of t = 0
# coordinates per pass (float32; float64 a quarter on the CPU). On the CPU each op of a pass then stays below
# torch's parallel grain (32768 elements) and runs in one thread: above it, on this project's 2-core VM with other
# work running, the ops' thread handoffs made passes of 2^14 coordinates 8-15x slower than passes of 2^13 (and
# hashing in passes of 2^20, 9x slower than in passes of 2^15, HASH_BLOCK, for the cache)
BLOCK = {"cpu": 1 << 13, "cuda": 1 << 20}
HASH_BLOCK = 1 << 15
MAX_PARAMS = 1 << 30  # 3P addends below 2^31 per digit stay below 2^63
FAMILIES = ("distances", "pairs", "gram")


# --- the hash ----------------------------------------------------------------------------------------


def _splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def hash_keys(seed, n_params, dim, nonzeros):
    """[(k1, k2)] per block r: two 32-bit keys from splitmix64 of (seed, P, d, s, r), in Python integers."""
    keys = []
    for r in range(nonzeros):
        z = _splitmix64(seed & M64)
        for v in (n_params, dim, nonzeros, r):
            z = _splitmix64(z ^ v)
        keys.append((z & M32, z >> 32))
    return keys


def _mul32(x, c):
    """x * c mod 2^32 for int64 x in [0, 2^32): two products below 2^48, no int64 overflow."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & M32


def _mix32(x):
    """lowbias32 (Wellons): a bijection of [0, 2^32) with good avalanche, on int64 tensors."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def block_layout(dim, nonzeros):
    """(first bucket, buckets) of each of the s blocks: d // s each, the first d % s one more."""
    base, extra = divmod(dim, nonzeros)
    return [(r * base + min(r, extra), base + (r < extra)) for r in range(nonzeros)]


# --- the projection ----------------------------------------------------------------------------------


class SparseProjection:
    """S: R^P -> R^d, seeded: s nonzeros +-1/sqrt(s) per coordinate, one in each of s blocks of buckets.

        proj = SparseProjection(n_params, 17_000, seed=0)
        y = proj(g)                       # (d,) float64 on g's device
        row = proj.row(device)            # or tensor by tensor, as the gradient is formed:
        for p, offset in tensors: row.add(p.grad, offset)
        y = row.value()

    seed: any integer in [0, 2^64). block: coordinates per pass (None: BLOCK of the device; it changes no bit).
    cache: keep the hash of all P coordinates once computed (4 s P bytes on that device): None keeps it on the
    CPU only, where recomputing it for every gradient costs ~4x the sketch (on CUDA, a few passes per block)."""

    def __init__(self, n_params, dim, seed=0, nonzeros=4, block=None, cache=None):
        if not 0 < n_params < MAX_PARAMS:
            raise ValueError(f"the sketch takes 1 to {MAX_PARAMS - 1} parameters, got {n_params}")
        if not 1 <= nonzeros <= dim < (1 << 25):
            raise ValueError(f"need 1 <= nonzeros <= dim < 2^25, got nonzeros={nonzeros}, dim={dim}")
        if not 0 <= seed <= M64:
            raise ValueError(f"the seed is an integer in [0, 2^64), got {seed}")
        self.n_params, self.dim, self.seed, self.nonzeros = int(n_params), int(dim), int(seed), int(nonzeros)
        self.block, self.cache = block, cache
        self.scale = 1 / math.sqrt(nonzeros)
        self.keys = hash_keys(self.seed, self.n_params, self.dim, self.nonzeros)
        self.layout = block_layout(self.dim, self.nonzeros)
        self._codes = {}  # device -> (s, P) int32, where cached

    def _block(self, device, dtype):
        import torch

        block = self.block or BLOCK.get(device.type, BLOCK["cpu"])
        return max(1, block // 4) if dtype == torch.float64 and device.type == "cpu" else block

    def codes(self, lo, hi, device):
        """(s, hi - lo) int64 (int32 where cached): bucket * 64 + (sign < 0) * 32 for coordinates [lo, hi).
        The place of a value's addends in the accumulator is code ^ ((value < 0) * 32 + digit)."""
        import torch

        device = torch.device(device)
        cache = self.cache if self.cache is not None else device.type == "cpu"
        if not cache:
            return self._hash(lo, hi, device)
        key = str(device)
        if key not in self._codes:
            codes = torch.empty((self.nonzeros, self.n_params), dtype=torch.int32, device=device)
            step = HASH_BLOCK if device.type == "cpu" else max(self._block(device, torch.float32), 1 << 22)
            for a in range(0, self.n_params, step):
                b = min(a + step, self.n_params)
                codes[:, a:b] = self._hash(a, b, device)
            self._codes[key] = codes
        return self._codes[key][:, lo:hi]

    def _hash(self, lo, hi, device):
        import torch

        i = torch.arange(lo, hi, dtype=torch.int64, device=device)
        out = torch.empty((self.nonzeros, hi - lo), dtype=torch.int64, device=device)
        for r, ((k1, k2), (first, m)) in enumerate(zip(self.keys, self.layout)):
            h = _mix32(_mix32(i ^ k1) ^ k2)
            bucket = (((h >> 1) * m) >> 31) + first
            out[r] = (bucket << 6) | ((h & 1) << 5)
        return out

    def buckets(self, lo, hi, device="cpu"):
        """(buckets (s, n) int64, signs (s, n) +-1 int64) of coordinates [lo, hi): S[buckets[r, j], lo + j] =
        signs[r, j] / sqrt(s)."""
        import torch

        code = self.codes(lo, hi, device).to(torch.int64)
        return code >> 6, 1 - 2 * ((code >> 5) & 1)

    def row(self, device):
        """An empty sketch of one row on `device`, to add the row's pieces to (SketchRow.add)."""
        return SketchRow(self, device)

    def __call__(self, g):
        """The sketch (d,) float64 of a whole row g (P values, any shape, float32 or float64), on g's device."""
        if g.numel() != self.n_params:
            raise ValueError(f"a row of {self.n_params} values, got {g.numel()}")
        row = self.row(g.device)
        row.add(g, 0)
        return row.value()


def _pieces(x):
    """A float block's addends: (place (n_pieces, B) int64 = (x < 0) * 32 + digit, addend (n_pieces, B) int64
    below 2^31, count of values that are NaN, inf or of magnitude >= 2^128 (0-d tensor))."""
    import torch

    if x.dtype == torch.float32:
        bits = x.view(torch.int32).to(torch.int64)
        e = (bits >> 23) & 0xFF
        mant = (bits & 0x7FFFFF) | ((e > 0).to(torch.int64) << 23)
        t = (e - 1).clamp_(min=0)  # the place of mant's last bit: 2^(t - 149); a subnormal's is t = 0
        addend = (mant << (t & DIGIT_BITS - 1))[None]
        place = (((bits < 0).to(torch.int64) << 5) | (t >> DIGIT_SHIFT))[None]
        return place, addend, (e == 0xFF).sum()
    bits = x.view(torch.int64)
    e = (bits >> 52) & 0x7FF
    mant = (bits & ((1 << 52) - 1)) | ((e > 0).to(torch.int64) << 52)
    t0 = e.clamp(min=1) - (1075 - TINY)  # the place of mant's last bit
    parts = torch.stack([mant >> 29, (mant >> 5) & 0xFFFFFF, mant & 31])  # 24 + 24 + 5 bits
    t = torch.stack([t0 + 29, t0 + 5, t0])
    parts = parts >> (-t).clamp_(0, 63)  # below 2^-149: truncated toward zero
    t = t.clamp_(0, 254)
    addend = parts << (t & DIGIT_BITS - 1)
    sign = (bits < 0).to(torch.int64) << 5
    place = sign | (t >> DIGIT_SHIFT)
    return place, addend, ((e == 0x7FF) | (t0 + 29 > 253)).sum()


def _carry(digits):
    """The same integers (DIGITS, d) with digits 0 .. DIGITS - 2 in [0, 2^DIGIT_BITS), the carries moved up from
    the bottom, exactly (>> on int64 is an arithmetic shift in torch: a floor, for negative digits too); the top
    digit keeps the sign."""
    digits = digits.clone()
    for b in range(DIGITS - 1):
        carry = digits[b] >> DIGIT_BITS
        digits[b] &= (1 << DIGIT_BITS) - 1
        digits[b + 1] += carry
    return digits


class SketchRow:
    """One row's sketch being built: d buckets x 2 signs x DIGITS int64 digits, exact until value()."""

    def __init__(self, projection, device):
        import torch

        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.projection, self.device = projection, device
        self.acc = torch.zeros(projection.dim * 2 * DIGITS, dtype=torch.int64, device=self.device)
        self.bad = torch.zeros((), dtype=torch.int64, device=self.device)

    def add(self, values, offset=0):
        """Add the row's coordinates [offset, offset + values.numel()) (values: any shape, float32 or float64,
        on this row's device, flattened in row-major order). Pieces may come in any order and any split; a
        coordinate added twice counts twice."""
        import torch

        proj = self.projection
        x = values.detach().reshape(-1)
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"the sketch takes float32 or float64 values, got {x.dtype}")
        if x.device != self.device:
            raise ValueError(f"values on {x.device}, the sketch's row on {self.device}")
        if offset < 0 or offset + x.numel() > proj.n_params:
            raise ValueError(f"coordinates [{offset}, {offset + x.numel()}) outside the row's {proj.n_params}")
        step = proj._block(x.device, x.dtype)
        for lo in range(0, x.numel(), step):
            hi = min(lo + step, x.numel())
            place, addend, bad = _pieces(x[lo:hi])
            code = proj.codes(offset + lo, offset + hi, x.device)  # (s, n)
            index = code[:, None, :] ^ place[None]  # (s, pieces, n)
            self.acc.index_add_(0, index.reshape(-1), addend.expand(index.shape).reshape(-1))
            self.bad += bad
        return self

    def value(self):
        """The sketch (d,) float64: the exact sums rounded once (within ~1 ulp), times 1/sqrt(s); NaN everywhere
        if any value added was NaN, inf or of magnitude >= 2^128. Same bits on the CPU and on CUDA."""
        import torch

        acc = self.acc.view(self.projection.dim, 2, DIGITS)
        digits = _carry((acc[:, 0] - acc[:, 1]).T.contiguous())
        negative = digits[-1] < 0
        digits = _carry(torch.where(negative, -digits, digits))  # magnitudes: every digit >= 0
        places = torch.tensor([math.ldexp(1.0, DIGIT_BITS * b - TINY) for b in range(DIGITS)], dtype=torch.float64)
        # exact: powers of 2 made by Python, digits below 2^53 (all but a top digit of a value beyond 2^152)
        terms = digits.to(torch.float64) * places.to(self.device)[:, None]
        total = terms[-1]
        for b in reversed(range(DIGITS - 1)):  # largest first, one rounding each, in this order on any device
            total = total + terms[b]
        total = torch.where(negative, -total, total) * self.projection.scale
        return torch.where(self.bad > 0, torch.full_like(total, math.nan), total)


class SketchSink:
    """run_epoch's gradient sink (the protocol of training.KeepLast) that keeps only each g_k's sketch: rows
    (K, d) float64 on the CPU, NaN until put.

    g_k is computed into one reused buffer on its device, sketched there in put(), and its d values copied to
    the host; nothing of size P is kept but that buffer, the engine's float64 sum, and the hash
    (SparseProjection's cache)."""

    def __init__(self, projection, n_rows):
        from .training import KeepLast  # here: the bound and the reduction import no torch

        self.projection = projection
        self.rows = np.full((n_rows, projection.dim), np.nan)
        self.formed = np.zeros(n_rows, dtype=bool)  # which rows were put (a row of NaN is a non-finite gradient)
        buffers = KeepLast()  # its one reused row buffer and float64 sum
        self.row, self.total = buffers.row, buffers.total

    def put(self, k, g):
        self.rows[k] = self.projection(g).cpu().numpy()
        self.formed[k] = True


# --- the reduction -----------------------------------------------------------------------------------


def reduce_sketches(rows, gram=False, threads=None, progress=None):
    """distances.reduce_rows on the K sketched rows (K, d): distance, norm, cosine (K,), full_norm, and with
    `gram` the K x K Gram matrix estimate; g_bar's sketch is the rows' mean (S is linear). Raises
    distances.NonFiniteGradient naming the first batch whose sketch is NaN. threads, progress: reduce_rows'."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    result = reduce_rows(rows, rows.sum(0), progress, threads=threads, gram=gram)
    del result["layer_distance"]  # one "tensor": the whole sketched row; per-tensor distances are not sketched
    return result


# --- the error bound ---------------------------------------------------------------------------------


def n_lengths(n_batches, family="pairs"):
    """How many lengths the union bound covers: "distances" the K ||g_k - g_bar||; "pairs" every distance among
    g_1 .. g_K and g_bar (K (K + 1) / 2); "gram" every distance among 0, g_1 .. g_K, g_bar ((K + 1) (K + 2) / 2:
    norms too, so that every Gram entry and cosine is bounded through them)."""
    k = int(n_batches)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return {"distances": k, "pairs": k * (k + 1) // 2, "gram": (k + 1) * (k + 2) // 2}[family]


def length_tail(dim, eps):
    """P(| ||Sx|| / ||x|| - 1 | > eps) for one x and a Gaussian S (entries N(0, 1/d)), bounded by the chi-square
    Chernoff bounds (Dasgupta & Gupta 2003, lemma 2.2): d ||Sx||^2 / ||x||^2 ~ chi2_d and
    P(chi2_d >= (1 + a) d) <= exp(-d/2 (a - ln(1 + a))), P(chi2_d <= (1 - b) d) <= exp(-d/2 (-b - ln(1 - b))),
    with a = (1 + eps)^2 - 1 and b = 1 - (1 - eps)^2 (eps is on the length, not its square)."""
    a, b = (1 + eps) ** 2 - 1, 1 - (1 - eps) ** 2
    upper = math.exp(-dim / 2 * (a - math.log1p(a)))
    lower = math.exp(-dim / 2 * (-b - math.log1p(-b))) if b < 1 else 0.0
    return upper + lower


def sketch_dim(n_batches, eps, delta=0.05, family="pairs"):
    """The smallest d with n_lengths(K, family) * length_tail(d, eps) <= delta: with probability 1 - delta (over
    the seed, the Gaussian bound of sketch_bound) every length of the family is within relative eps.

    The issue's d ~ 8 ln K / eps^2 (17,000 at eps = 0.05, K = 195) is Dasgupta & Gupta's existence bound (their
    theorem 2.1) for squared distances among n = K points, whose random projection succeeds with probability only
    >= 1 / n; here eps is on the distance D itself, as the
    page reports it (2 eps on D^2), and delta is stated: K = 195, eps = 0.05, delta = 0.05, pairs gives 5,426."""
    if not 0 < eps < 1 or not 0 < delta < 1:
        raise ValueError(f"need 0 < eps < 1 and 0 < delta < 1, got eps={eps}, delta={delta}")
    n = n_lengths(n_batches, family)
    lo, hi = 1, 2
    while n * length_tail(hi, eps) > delta:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if n * length_tail(mid, eps) > delta else (lo, mid)
    return lo


def sketch_bound(n_batches, dim, delta=0.05, family="pairs", nonzeros=4):
    """The error bound a page prints beside a sketched matrix: the smallest eps with
    n_lengths(K, family) * length_tail(dim, eps) <= delta (to 1e-6, rounded up), and its statement.

    What it covers: with probability >= 1 - delta over the projection's seed, every length of the family (the K
    distances ||g_k - g_bar||, every pairwise distance, or those and the norms) is within relative eps of the
    exact one, at once. Sketching is linear, so S g_k - S g_bar = S (g_k - g_bar): the error is relative to
    the distance itself, however small it is against the norms. Gram entries follow by polarization from the
    "gram" family: |G^_ij - G_ij| <= e2 (||g_i||^2 + ||g_j||^2 + ||g_i - g_j||^2) / 2 with e2 = 2 eps + eps^2.

    Its assumptions. (1) The hash acts as a random function (it is a fixed pseudorandom function of the
    seed). (2) The Gaussian tail: the bound is exact (a Chernoff bound, so conservative) for a dense Gaussian
    projection. The sparse S has the same mean and exactly the variance 2 (||x||^4 - ||x||_4^4) / d of
    ||Sx||^2, for any s; its tails approach the Gaussian's when no coordinate of x holds a noticeable share of
    ||x||^2 (x spread over many coordinates, as a network's gradient differences are); for a concentrated x
    (e.g. e_1 - e_2) two coordinates collide in a bucket with probability ~ s^2 / d and the bound fails. The
    sparse JL theorem for every x (Kane & Nelson 2014; Cohen, Jayram & Nelson 2018) needs
    s >= C eps^-1 ln(1/delta) and d >= C eps^-2 ln(1/delta) with unspecified constants, far more nonzeros
    than s = 4; Freksen, Kamma & Larsen (2018) and Jagadeesan (2019) give the spread each s needs, up to
    constants. What holds for every x, from the variance alone (Chebyshev), is per single length:
    P(error > eps) <= 2 / (d b^2), b = 1 - (1 - eps)^2: `eps_any_vector` is the eps at which that is delta, for
    one length, not the family."""
    n = n_lengths(n_batches, family)
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-7:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if n * length_tail(dim, mid) > delta else (lo, mid)
    eps = math.ceil(hi * 1e6) / 1e6
    # Chebyshev for one length: 2 / (d b^2) = delta  ->  b = sqrt(2 / (d delta)), eps = 1 - sqrt(1 - b)
    b = math.sqrt(2 / (dim * delta))
    eps_any = 1 - math.sqrt(1 - b) if b < 1 else math.inf
    what = {
        "distances": f"each of the {n:,} distances ||g_k - g_bar||",
        "pairs": f"each of the {n:,} distances among the batches' gradients and the full gradient",
        "gram": f"each of the {n:,} distances and norms (so the Gram matrix, by polarization)",
    }[family]
    text = (
        f"Sketched: each gradient projected to d = {dim:,} values (sparse JL, s = {nonzeros}). With probability "
        f">= {1 - delta:g} over the projection's seed, {what} is within {100 * eps:.3g}% of the exact value "
        f"(Gaussian JL tail bound; it holds for gradients spread over many parameters, and is checked by measurement)."
    )
    return dict(
        eps=eps,
        delta=delta,
        dim=dim,
        nonzeros=nonzeros,
        family=family,
        n_lengths=n,
        eps_squared=2 * eps + eps**2,
        eps_any_vector=eps_any,
        text=text,
    )
