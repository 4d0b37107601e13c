/* Direct correlation kernels, instantiated for one sample type.
 *
 * Before including this file define:
 *   T    the sample type (float or double)
 *   SFX  a suffix for the function names (f32 or f64)
 *
 * Layout: images are C-contiguous (H, W, C) arrays; a "row" is W*C samples.
 * Borders are described by index maps computed in Python with numpy.pad:
 *   rows[p], p in [0, H + kh - 1): the source row read by padded row p, or -1 for cval;
 *   cols[q], q in [0, W + kw - 1): the source column of padded column q, or -1 for cval.
 * The middle of cols is the identity (cols[left + x] == x), so a padded row is
 * one memcpy plus the few border samples.
 *
 * Correlation, for output row y and sample x (x indexes the W*C samples):
 *   dst[y][x] = sum_a sum_b k[a][b] * padded_row(rows[y + a])[x + b*C]
 */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

/* Samples per chunk of the accumulation loop: the accumulator chunk stays in L1. */
#ifndef CHUNK
#define CHUNK 1024
#endif
/* Output rows per block in the separable path. */
#ifndef SEP_BLOCK
#define SEP_BLOCK 16
#endif

/* Write padded row of source row r (or a cval row if r < 0) into out (Wp*C samples). */
static void FN(pad_row)(const T *src, Py_ssize_t W, Py_ssize_t C, Py_ssize_t r,
                        const int64_t *cols, Py_ssize_t left, Py_ssize_t Wp, T cval, T *out)
{
    Py_ssize_t q, c;
    if (r < 0) {
        for (q = 0; q < Wp * C; q++) out[q] = cval;
        return;
    }
    const T *row = src + r * W * C;
    for (q = 0; q < left; q++) {
        int64_t s = cols[q];
        for (c = 0; c < C; c++) out[q * C + c] = s < 0 ? cval : row[s * C + c];
    }
    memcpy(out + left * C, row, (size_t)(W * C) * sizeof(T));
    for (q = left + W; q < Wp; q++) {
        int64_t s = cols[q];
        for (c = 0; c < C; c++) out[q * C + c] = s < 0 ? cval : row[s * C + c];
    }
}

/* acc[0:n] (+)= w * s[0:n]; the first tap assigns. Vectorised by the compiler. */
TARGET_CLONES
static void FN(axpy)(T *restrict acc, const T *restrict s, T w, Py_ssize_t n, int first)
{
    Py_ssize_t i;
    if (first) {
        for (i = 0; i < n; i++) acc[i] = w * s[i];
    } else {
        for (i = 0; i < n; i++) acc[i] += w * s[i];
    }
}

/* acc[0:n] (+)= w * (s[0:n] + t[0:n]): two taps of equal weight at once. */
TARGET_CLONES
static void FN(axpy2)(T *restrict acc, const T *restrict s, const T *restrict t, T w,
                      Py_ssize_t n, int first)
{
    Py_ssize_t i;
    if (first) {
        for (i = 0; i < n; i++) acc[i] = w * (s[i] + t[i]);
    } else {
        for (i = 0; i < n; i++) acc[i] += w * (s[i] + t[i]);
    }
}

/* General 2-D correlation of output rows [y0, y1).
 * ring: scratch of kh * Wp * C samples (padded rows, indexed by padded row mod kh). */
static void FN(corr2d)(const T *src, T *dst, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                       const T *k, Py_ssize_t kh, Py_ssize_t kw,
                       const int64_t *rows, const int64_t *cols, Py_ssize_t lft, T cval,
                       Py_ssize_t y0, Py_ssize_t y1, T *ring)
{
    const Py_ssize_t Wp = W + kw - 1;
    const Py_ssize_t n = W * C, rowlen = Wp * C;
    Py_ssize_t y, a, b, x0, p;
    Py_ssize_t filled_to = y0; /* padded rows [y0, filled_to) are in the ring */
    (void)H;
    for (y = y0; y < y1; y++) {
        for (p = filled_to; p < y + kh; p++) {
            FN(pad_row)(src, W, C, rows[p], cols, lft, Wp, cval, ring + (p % kh) * rowlen);
        }
        if (filled_to < y + kh) filled_to = y + kh;
        T *out = dst + y * n;
        for (x0 = 0; x0 < n; x0 += CHUNK) {
            Py_ssize_t len = n - x0 < CHUNK ? n - x0 : CHUNK;
            int first = 1;
            for (a = 0; a < kh; a++) {
                const T *prow = ring + ((y + a) % kh) * rowlen + x0;
                for (b = 0; b < kw; b++) {
                    T w = k[a * kw + b];
                    if (w == 0) continue;
                    FN(axpy)(out + x0, prow + b * C, w, len, first);
                    first = 0;
                }
            }
            if (first) memset(out + x0, 0, (size_t)len * sizeof(T));
        }
    }
}

/* Separable correlation (column factor kv of length kh, row factor kr of length kw)
 * of output rows [y0, y1).  Output rows are done SEP_BLOCK at a time: the vertical
 * pass for a block walks the columns in chunks, so the block's source rows of one
 * chunk stay in cache while they serve every output row of the block.
 * scratch: (SEP_BLOCK * W + Wp) * C samples. */
static void FN(corrsep)(const T *src, T *dst, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        const T *kv, Py_ssize_t kh, const T *kr, Py_ssize_t kw,
                        const int64_t *rows, const int64_t *cols, Py_ssize_t lft, T cval,
                        Py_ssize_t y0, Py_ssize_t y1, T *scratch)
{
    const Py_ssize_t Wp = W + kw - 1, n = W * C;
    T *vblock = scratch;                /* vertical pass results, SEP_BLOCK rows of W*C */
    T *prow = scratch + SEP_BLOCK * n;  /* one of them, padded horizontally, Wp*C */
    Py_ssize_t yb, y, a, b, x0, q, c;
    T ccol = 0; /* a cval column after the vertical pass */
    (void)H;
    for (a = 0; a < kh; a++) ccol += kv[a] * cval;
    for (yb = y0; yb < y1; yb += SEP_BLOCK) {
        Py_ssize_t nb = y1 - yb < SEP_BLOCK ? y1 - yb : SEP_BLOCK;
        /* vertical pass straight from the source rows */
        for (x0 = 0; x0 < n; x0 += CHUNK) {
            Py_ssize_t len = n - x0 < CHUNK ? n - x0 : CHUNK;
            for (y = 0; y < nb; y++) {
                T *acc = vblock + y * n + x0;
                int first = 1;
                T cacc = 0;
                for (a = 0; a < kh; a++) {
                    int64_t r = rows[yb + y + a];
                    Py_ssize_t m = kh - 1 - a; /* mirror tap */
                    if (kv[a] == 0) continue;
                    if (r < 0) { cacc += kv[a] * cval; continue; }
                    if (m > a && kv[m] == kv[a] && rows[yb + y + m] >= 0) {
                        FN(axpy2)(acc, src + r * n + x0, src + rows[yb + y + m] * n + x0,
                                  kv[a], len, first);
                        first = 0;
                        continue;
                    }
                    if (m < a && kv[m] == kv[a] && rows[yb + y + m] >= 0) continue; /* done */
                    FN(axpy)(acc, src + r * n + x0, kv[a], len, first);
                    first = 0;
                }
                if (first) {
                    for (q = 0; q < len; q++) acc[q] = cacc;
                } else if (cacc != 0) {
                    for (q = 0; q < len; q++) acc[q] += cacc;
                }
            }
        }
        for (y = 0; y < nb; y++) {
            const T *vrow = vblock + y * n;
            /* horizontal padding of the vertical result */
            for (q = 0; q < lft; q++) {
                int64_t s = cols[q];
                for (c = 0; c < C; c++) prow[q * C + c] = s < 0 ? ccol : vrow[s * C + c];
            }
            memcpy(prow + lft * C, vrow, (size_t)n * sizeof(T));
            for (q = lft + W; q < Wp; q++) {
                int64_t s = cols[q];
                for (c = 0; c < C; c++) prow[q * C + c] = s < 0 ? ccol : vrow[s * C + c];
            }
            /* horizontal pass */
            T *out = dst + (yb + y) * n;
            for (x0 = 0; x0 < n; x0 += CHUNK) {
                Py_ssize_t len = n - x0 < CHUNK ? n - x0 : CHUNK;
                int first = 1;
                for (b = 0; b < kw; b++) {
                    Py_ssize_t m = kw - 1 - b; /* mirror tap */
                    if (kr[b] == 0) continue;
                    if (m > b && kr[m] == kr[b]) {
                        FN(axpy2)(out + x0, prow + x0 + b * C, prow + x0 + m * C, kr[b], len,
                                  first);
                        first = 0;
                        continue;
                    }
                    if (m < b && kr[m] == kr[b]) continue; /* paired with its mirror */
                    FN(axpy)(out + x0, prow + x0 + b * C, kr[b], len, first);
                    first = 0;
                }
                if (first) memset(out + x0, 0, (size_t)len * sizeof(T));
            }
        }
    }
}

#undef FN
