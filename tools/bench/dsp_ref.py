"""Plain-bytecode reference of the per-sample pipeline in the firmware's dsp.py.

The same arithmetic as ``dsp.kernel`` without ``@micropython.viper``: the benchmark
(tools/bench/bench_board_dsp.py) measures the viper kernel against this one, and the
tests check that both give identical results. It lives beside the benchmarks, not in
the firmware package: the board never runs it, so ``bpiiot flash`` never ships it.
Import it in the Unix port with ``tools/bench`` on ``MICROPYPATH``.
"""

from micropython import const

_OFF = const(0x20000000)
# The state layout of dsp.py.
_SH1 = const(0)
_D1 = const(1)
_B01 = const(2)
_B11 = const(3)
_A11 = const(4)
_A21 = const(5)
_B02 = const(6)
_B12 = const(7)
_A12 = const(8)
_A22 = const(9)
_SH4 = const(10)
_D1B = const(11)
_D2B = const(12)
_F = const(13)
_SH = const(14)
_X1 = const(15)
_A1 = const(16)
_A2 = const(17)
_B1 = const(18)
_B2 = const(19)
_C1 = const(20)
_C2 = const(21)
_U1 = const(22)
_U2 = const(23)
_E1 = const(24)
_E2 = const(25)
_R1A = const(26)
_R1B = const(27)
_R2B = const(28)
_PEAK = const(29)
_XH = const(30)
_XL = const(31)
_HHH = const(32)
_HHL = const(33)
_HLH = const(34)
_HLL = const(35)
_LLH = const(36)
_LLL = const(37)
_PRIMED = const(38)


def kernel(buf, state, i0, i1):
    """Plain-bytecode twin of dsp.kernel: same arithmetic, same state layout."""
    p = buf
    s = state
    sh1 = s[_SH1] - _OFF
    d1 = s[_D1] - _OFF
    b01 = s[_B01] - _OFF
    b11 = s[_B11] - _OFF
    a11 = s[_A11] - _OFF
    a21 = s[_A21] - _OFF
    b02 = s[_B02] - _OFF
    b12 = s[_B12] - _OFF
    a12 = s[_A12] - _OFF
    a22 = s[_A22] - _OFF
    sh4 = s[_SH4] - _OFF
    d1b = s[_D1B] - _OFF
    d2b = s[_D2B] - _OFF
    f = s[_F] - _OFF
    sh = s[_SH] - _OFF
    rs = 1 << (sh - 1)
    m1 = (1 << sh1) - 1
    m4 = (1 << sh4) - 1
    x1 = s[_X1] - _OFF
    a1 = s[_A1] - _OFF
    a2 = s[_A2] - _OFF
    b1 = s[_B1] - _OFF
    b2 = s[_B2] - _OFF
    c1 = s[_C1] - _OFF
    c2 = s[_C2] - _OFF
    u1 = s[_U1] - _OFF
    u2 = s[_U2] - _OFF
    e1 = s[_E1] - _OFF
    e2 = s[_E2] - _OFF
    r1a = s[_R1A] - _OFF
    r1b = s[_R1B] - _OFF
    r2b = s[_R2B] - _OFF
    peak = s[_PEAK] - _OFF
    xh = s[_XH] - _OFF
    xl = s[_XL] - _OFF
    hhh = s[_HHH] - _OFF
    hhl = s[_HHL] - _OFF
    hlh = s[_HLH] - _OFF
    hll = s[_HLL] - _OFF
    llh = s[_LLH] - _OFF
    lll = s[_LLL] - _OFF
    i = i0
    if s[_PRIMED] == _OFF and i < i1:
        # Prime: the first sample is taken as the steady DC level.
        x1 = p[i]
        s[_PRIMED] = _OFF + 1
    while i < i1:
        x = p[i]
        i += 1
        # Acceleration statistics: x*x <= 2^30; the low word stays below 2^29.
        ax = x
        if ax < 0:
            ax = 0 - ax
        if ax > peak:
            peak = ax
        xl += x * x
        if xl >= 0x20000000:
            xh += xl >> 29
            xl &= 0x1FFFFFFF
        # Section 1: the high-pass's real pole, delta form, 1st-order error feedback.
        t1 = (x - x1) << f
        q = (a1 >> 14) * d1 + (((a1 & 16383) * d1) >> 14) + r1a
        d = q >> sh1
        r1a = q & m1
        t1 += a1 - d
        # Section 2: low-pass; each product round(s * c / 2^15) is split in two halves.
        w = t1 + a2
        t2 = ((w >> 14) * b01 + 1 + (((w & 16383) * b01) >> 14)) >> 1
        t2 += ((a1 >> 14) * b11 + 1 + (((a1 & 16383) * b11) >> 14)) >> 1
        t2 -= ((b1 >> 14) * a11 + 1 + (((b1 & 16383) * a11) >> 14)) >> 1
        t2 -= ((b2 >> 14) * a21 + 1 + (((b2 & 16383) * a21) >> 14)) >> 1
        # Section 3: low-pass.
        w = t2 + b2
        t3 = ((w >> 14) * b02 + 1 + (((w & 16383) * b02) >> 14)) >> 1
        t3 += ((b1 >> 14) * b12 + 1 + (((b1 & 16383) * b12) >> 14)) >> 1
        t3 -= ((c1 >> 14) * a12 + 1 + (((c1 & 16383) * a12) >> 14)) >> 1
        t3 -= ((c2 >> 14) * a22 + 1 + (((c2 & 16383) * a22) >> 14)) >> 1
        # Section 4: the high-pass's pole pair times the Al-Alaoui integrator; its
        # numerator (1 - z^-1)(7 + z^-1) also blocks the low-pass's rounding bias.
        u = (t3 + rs) >> sh
        t4 = 7 * u - 6 * u1 - u2
        q = (e1 >> 14) * d1b + (e2 >> 14) * d2b
        # The low halves are rounded, not floored: a bias here would reach the
        # output through 1/A(1) (about 2600) as a steady offset of about 1 um/s.
        q += (((e1 & 16383) * d1b + 8192) >> 14) + (((e2 & 16383) * d2b + 8192) >> 14)
        q += 2 * r1b - r2b
        d = q >> sh4
        r2b = r1b
        r1b = q & m4
        t4 += 2 * e1 - e2 - d
        x1 = x
        a2 = a1
        a1 = t1
        b2 = b1
        b1 = t2
        c2 = c1
        c1 = t3
        u2 = u1
        u1 = u
        e2 = e1
        e1 = t4
        # Velocity square, |t4| < 2^28 split as h*2^14 + l: three partial sums,
        # each term below 2^28, each kept in a two-word accumulator (base 2^29).
        if t4 < 0:
            t4 = 0 - t4
        h = t4 >> 14
        lo = t4 & 16383
        hhl += h * h
        if hhl >= 0x20000000:
            hhl -= 0x20000000
            hhh += 1
        hll += h * lo
        if hll >= 0x20000000:
            hll -= 0x20000000
            hlh += 1
        lll += lo * lo
        if lll >= 0x20000000:
            lll -= 0x20000000
            llh += 1
    s[_X1] = x1 + _OFF
    s[_A1] = a1 + _OFF
    s[_A2] = a2 + _OFF
    s[_B1] = b1 + _OFF
    s[_B2] = b2 + _OFF
    s[_C1] = c1 + _OFF
    s[_C2] = c2 + _OFF
    s[_U1] = u1 + _OFF
    s[_U2] = u2 + _OFF
    s[_E1] = e1 + _OFF
    s[_E2] = e2 + _OFF
    s[_R1A] = r1a + _OFF
    s[_R1B] = r1b + _OFF
    s[_R2B] = r2b + _OFF
    s[_PEAK] = peak + _OFF
    s[_XH] = xh + _OFF
    s[_XL] = xl + _OFF
    s[_HHH] = hhh + _OFF
    s[_HHL] = hhl + _OFF
    s[_HLH] = hlh + _OFF
    s[_HLL] = hll + _OFF
    s[_LLH] = llh + _OFF
    s[_LLL] = lll + _OFF
