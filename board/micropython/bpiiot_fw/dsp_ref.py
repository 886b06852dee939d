"""Plain-bytecode reference of the per-sample pipeline in dsp.py.

The same arithmetic as ``dsp.kernel`` without ``@micropython.viper``: the benchmark
(tools/bench/bench_board_dsp.py) measures the viper kernel against this one, and the
tests check that both give identical results. Not used by the firmware itself.
"""

from micropython import const

_OFF = const(0x20000000)


def kernel(buf, st, i0, i1):
    """Plain-bytecode twin of dsp.kernel: same arithmetic, same state layout."""
    p = buf
    s = st
    sh1 = s[0] - _OFF
    d1a = s[1] - _OFF
    d2a = s[2] - _OFF
    b01 = s[3] - _OFF
    b11 = s[4] - _OFF
    a11 = s[5] - _OFF
    a21 = s[6] - _OFF
    b02 = s[7] - _OFF
    b12 = s[8] - _OFF
    a12 = s[9] - _OFF
    a22 = s[10] - _OFF
    sh4 = s[11] - _OFF
    d1b = s[12] - _OFF
    d2b = s[13] - _OFF
    f = s[14] - _OFF
    sh = s[15] - _OFF
    rs = 1 << (sh - 1)
    m1 = (1 << sh1) - 1
    m4 = (1 << sh4) - 1
    x1 = s[16] - _OFF
    x2 = s[17] - _OFF
    a1 = s[18] - _OFF
    a2 = s[19] - _OFF
    b1 = s[20] - _OFF
    b2 = s[21] - _OFF
    c1 = s[22] - _OFF
    c2 = s[23] - _OFF
    u1 = s[24] - _OFF
    u2 = s[25] - _OFF
    e1 = s[26] - _OFF
    e2 = s[27] - _OFF
    r1a = s[28] - _OFF
    r2a = s[29] - _OFF
    r1b = s[30] - _OFF
    r2b = s[31] - _OFF
    peak = s[32] - _OFF
    xh = s[33] - _OFF
    xl = s[34] - _OFF
    hhh = s[35] - _OFF
    hhl = s[36] - _OFF
    hlh = s[37] - _OFF
    hll = s[38] - _OFF
    llh = s[39] - _OFF
    lll = s[40] - _OFF
    i = i0
    if s[41] == _OFF and i < i1:
        # Prime: the first sample is taken as the steady DC level.
        x1 = p[i]
        x2 = x1
        s[41] = _OFF + 1
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
        # Section 1: high-pass, delta form with 2nd-order error feedback.
        t1 = (x - 2 * x1 + x2) << f
        q = (a1 >> 14) * d1a + (a2 >> 14) * d2a
        q += (((a1 & 16383) * d1a) >> 14) + (((a2 & 16383) * d2a) >> 14)
        q += 2 * r1a - r2a
        d = q >> sh1
        r2a = r1a
        r1a = q & m1
        t1 += 2 * a1 - a2 - d
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
        # Section 4: high-pass times Al-Alaoui integrator, error feedback again.
        u = (t3 + rs) >> sh
        t4 = 7 * u - 6 * u1 - u2
        q = (e1 >> 14) * d1b + (e2 >> 14) * d2b
        q += (((e1 & 16383) * d1b) >> 14) + (((e2 & 16383) * d2b) >> 14)
        q += 2 * r1b - r2b
        d = q >> sh4
        r2b = r1b
        r1b = q & m4
        t4 += 2 * e1 - e2 - d
        x2 = x1
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
    s[16] = x1 + _OFF
    s[17] = x2 + _OFF
    s[18] = a1 + _OFF
    s[19] = a2 + _OFF
    s[20] = b1 + _OFF
    s[21] = b2 + _OFF
    s[22] = c1 + _OFF
    s[23] = c2 + _OFF
    s[24] = u1 + _OFF
    s[25] = u2 + _OFF
    s[26] = e1 + _OFF
    s[27] = e2 + _OFF
    s[28] = r1a + _OFF
    s[29] = r2a + _OFF
    s[30] = r1b + _OFF
    s[31] = r2b + _OFF
    s[32] = peak + _OFF
    s[33] = xh + _OFF
    s[34] = xl + _OFF
    s[35] = hhh + _OFF
    s[36] = hhl + _OFF
    s[37] = hlh + _OFF
    s[38] = hll + _OFF
    s[39] = llh + _OFF
    s[40] = lll + _OFF
