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

/* out[x] = sum_t w[t] * p[t][off + x] for x in [0, n): register-blocked so that a block
 * of outputs stays in registers across every tap (one load per multiply-add).  Written
 * with GCC/clang vector extensions (VEC is a 32-byte vector of T); other compilers get
 * the plain loop. */
#if defined(__GNUC__)
typedef T FN(vec) __attribute__((vector_size(32)));
typedef T FN(uvec) __attribute__((vector_size(32), aligned(sizeof(T))));
#define VLEN ((Py_ssize_t)(32 / sizeof(T)))
TARGET_CLONES
static void FN(dot_rows)(T *restrict out, const T *const *ptrs, const T *wts, Py_ssize_t nt,
                         Py_ssize_t off, Py_ssize_t n)
{
    Py_ssize_t x = 0, t;
    /* eight accumulators: more independent additions in flight than the adder's latency
     * (each output still sums its taps in order, so the values do not depend on this) */
    for (; x + 8 * VLEN <= n; x += 8 * VLEN) {
        FN(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
        for (t = 0; t < nt; t++) {
            const T w = wts[t];
            const T *p = ptrs[t] + off + x;
            a0 += w * *(const FN(uvec) *)(p);
            a1 += w * *(const FN(uvec) *)(p + VLEN);
            a2 += w * *(const FN(uvec) *)(p + 2 * VLEN);
            a3 += w * *(const FN(uvec) *)(p + 3 * VLEN);
            a4 += w * *(const FN(uvec) *)(p + 4 * VLEN);
            a5 += w * *(const FN(uvec) *)(p + 5 * VLEN);
            a6 += w * *(const FN(uvec) *)(p + 6 * VLEN);
            a7 += w * *(const FN(uvec) *)(p + 7 * VLEN);
        }
        *(FN(uvec) *)(out + x) = a0;
        *(FN(uvec) *)(out + x + VLEN) = a1;
        *(FN(uvec) *)(out + x + 2 * VLEN) = a2;
        *(FN(uvec) *)(out + x + 3 * VLEN) = a3;
        *(FN(uvec) *)(out + x + 4 * VLEN) = a4;
        *(FN(uvec) *)(out + x + 5 * VLEN) = a5;
        *(FN(uvec) *)(out + x + 6 * VLEN) = a6;
        *(FN(uvec) *)(out + x + 7 * VLEN) = a7;
    }
    for (; x + 4 * VLEN <= n; x += 4 * VLEN) {
        FN(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (t = 0; t < nt; t++) {
            const T w = wts[t];
            const T *p = ptrs[t] + off + x;
            a0 += w * *(const FN(uvec) *)(p);
            a1 += w * *(const FN(uvec) *)(p + VLEN);
            a2 += w * *(const FN(uvec) *)(p + 2 * VLEN);
            a3 += w * *(const FN(uvec) *)(p + 3 * VLEN);
        }
        *(FN(uvec) *)(out + x) = a0;
        *(FN(uvec) *)(out + x + VLEN) = a1;
        *(FN(uvec) *)(out + x + 2 * VLEN) = a2;
        *(FN(uvec) *)(out + x + 3 * VLEN) = a3;
    }
    for (; x + VLEN <= n; x += VLEN) {
        FN(vec) a0 = {0};
        for (t = 0; t < nt; t++) a0 += wts[t] * *(const FN(uvec) *)(ptrs[t] + off + x);
        *(FN(uvec) *)(out + x) = a0;
    }
    for (; x < n; x++) {
        T acc = 0;
        for (t = 0; t < nt; t++) acc += wts[t] * ptrs[t][off + x];
        out[x] = acc;
    }
}
#undef VLEN
#else
static void FN(dot_rows)(T *restrict out, const T *const *ptrs, const T *wts, Py_ssize_t nt,
                         Py_ssize_t off, Py_ssize_t n)
{
    Py_ssize_t x, t;
    for (x = 0; x < n; x++) out[x] = 0;
    for (t = 0; t < nt; t++) {
        const T w = wts[t];
        const T *p = ptrs[t] + off;
        for (x = 0; x < n; x++) out[x] += w * p[x];
    }
}
#endif

/* General 2-D correlation of output rows [y0, y1).
 * ring: scratch of kh * Wp * C samples (padded rows, indexed by padded row mod kh);
 * ptrs, wts: room for kh * kw taps. */
static void FN(corr2d)(const T *src, T *dst, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                       const T *k, Py_ssize_t kh, Py_ssize_t kw,
                       const int64_t *rows, const int64_t *cols, Py_ssize_t lft, T cval,
                       Py_ssize_t y0, Py_ssize_t y1, T *ring, const T **ptrs, T *wts)
{
    const Py_ssize_t Wp = W + kw - 1;
    const Py_ssize_t n = W * C, rowlen = Wp * C;
    Py_ssize_t y, a, b, p, nt;
    Py_ssize_t filled_to = y0; /* padded rows [y0, filled_to) are in the ring */
    (void)H;
    for (y = y0; y < y1; y++) {
        for (p = filled_to; p < y + kh; p++) {
            FN(pad_row)(src, W, C, rows[p], cols, lft, Wp, cval, ring + (p % kh) * rowlen);
        }
        if (filled_to < y + kh) filled_to = y + kh;
        nt = 0;
        for (a = 0; a < kh; a++) {
            const T *prow = ring + ((y + a) % kh) * rowlen;
            for (b = 0; b < kw; b++) {
                if (k[a * kw + b] == 0) continue;
                ptrs[nt] = prow + b * C;
                wts[nt] = k[a * kw + b];
                nt++;
            }
        }
        FN(dot_rows)(dst + y * n, ptrs, wts, nt, 0, n);
    }
}

/* Separable correlation (column factor kv of length kh, row factor kr of length kw)
 * of output rows [y0, y1).  Output rows are done SEP_BLOCK at a time: the vertical
 * pass for a block walks the columns in chunks, so the block's source rows of one
 * chunk stay in cache while they serve every output row of the block.
 * scratch: (SEP_BLOCK * W + Wp) * C samples; ptrs, wts: room for max(kh, kw) taps. */
static void FN(corrsep)(const T *src, T *dst, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        const T *kv, Py_ssize_t kh, const T *kr, Py_ssize_t kw,
                        const int64_t *rows, const int64_t *cols, Py_ssize_t lft, T cval,
                        Py_ssize_t y0, Py_ssize_t y1, T *scratch, const T **ptrs, T *wts)
{
    const Py_ssize_t Wp = W + kw - 1, n = W * C;
    T *vblock = scratch;                /* vertical pass results, SEP_BLOCK rows of W*C */
    T *prow = scratch + SEP_BLOCK * n;  /* one of them, padded horizontally, Wp*C */
    Py_ssize_t yb, y, a, b, x0, q, c, nt;
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
                T cacc = 0; /* rows outside the image under mode constant */
                nt = 0;
                for (a = 0; a < kh; a++) {
                    int64_t r = rows[yb + y + a];
                    if (kv[a] == 0) continue;
                    if (r < 0) {
                        cacc += kv[a] * cval;
                        continue;
                    }
                    ptrs[nt] = src + r * n;
                    wts[nt] = kv[a];
                    nt++;
                }
                FN(dot_rows)(acc, ptrs, wts, nt, x0, len);
                if (cacc != 0) {
                    for (q = 0; q < len; q++) acc[q] += cacc;
                }
            }
        }
        nt = 0;
        for (b = 0; b < kw; b++) {
            if (kr[b] == 0) continue;
            ptrs[nt] = prow + b * C;
            wts[nt] = kr[b];
            nt++;
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
            FN(dot_rows)(dst + (yb + y) * n, ptrs, wts, nt, 0, n);
        }
    }
}

#undef FN
