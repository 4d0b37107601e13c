/* Direct correlation (float32 arithmetic) that reads stored samples and writes output samples.
 *
 * The strip engine's fast path: the source is uint8, uint16 or float32 samples, converted to
 * float32 one row at a time as the row enters the ring of padded rows (k / 255 or k / 65535,
 * correctly rounded: the same values as unit_float's numpy division); the destination is
 * float32, or uint8/uint16 rounded from each L1-sized chunk of the accumulator as it is
 * stored (clip to [0, 1] and round the product by 255 or 65535 in double, half to even: the
 * same as to_depth).  So no float copy of a strip's input or output exists, and the values
 * are those of corr2d_f32 / corrsep_f32 on the converted image, bit for bit: the taps are
 * taken in the same order by the same dot_rows_f32.
 *
 * Needs filter_impl.h instantiated for float (pad_row_f32's layout, dot_rows_f32).
 */

enum { KIND_F32 = 0, KIND_U8 = 1, KIND_U16 = 2 };

static Py_ssize_t kind_size(int kind) { return kind == KIND_F32 ? 4 : kind == KIND_U8 ? 1 : 2; }

/* What the stored values were, for the range report: the float results' minimum and maximum,
 * how many lie below `below` / above `above` (compared in double), and how many are NaN. */
typedef struct {
    float lo, hi;
    Py_ssize_t below, above, nan;
    /* the thresholds as floats: a float is below the double `below` exactly when it is below
     * the least float >= it, and above `above` exactly when above the greatest float <= it */
    float below_at, above_at;
} io_stats;

static float float_at_or_above(double b)
{
    float f = (float)b;
    return (double)f < b ? nextafterf(f, INFINITY) : f;
}

static float float_at_or_below(double a)
{
    float f = (float)a;
    return (double)f > a ? nextafterf(f, -INFINITY) : f;
}

/* out[i] = src[start + i] as float32 on the unit scale */
TARGET_CLONES
static void io_load(const void *src, int kind, Py_ssize_t start, Py_ssize_t n, float *out)
{
    /* a float division, correctly rounded: numpy's k / top in float32 (vdivps: about twice
     * as fast here as the product k * (1 / top) in double, which gives the same floats) */
    Py_ssize_t i;
    if (kind == KIND_U8) {
        const uint8_t *s = (const uint8_t *)src + start;
        for (i = 0; i < n; i++) out[i] = (float)s[i] / 255.0f;
    } else if (kind == KIND_U16) {
        const uint16_t *s = (const uint16_t *)src + start;
        for (i = 0; i < n; i++) out[i] = (float)s[i] / 65535.0f;
    } else {
        memcpy(out, (const float *)src + start, (size_t)n * sizeof(float));
    }
}

/* Sample `at` of the source as float32 on the unit scale. */
static float io_sample(const void *src, int kind, Py_ssize_t at)
{
    if (kind == KIND_U8) return (float)((const uint8_t *)src)[at] / 255.0f;
    if (kind == KIND_U16) return (float)((const uint16_t *)src)[at] / 65535.0f;
    return ((const float *)src)[at];
}

/* The padded row of source row r (cval if r < 0), converted: pad_row_f32 for stored samples. */
static void io_pad_row(const void *src, int kind, Py_ssize_t W, Py_ssize_t C, Py_ssize_t r,
                       const int64_t *cols, Py_ssize_t left, Py_ssize_t Wp, float cval,
                       float *out)
{
    Py_ssize_t q, c;
    if (r < 0) {
        for (q = 0; q < Wp * C; q++) out[q] = cval;
        return;
    }
    const Py_ssize_t base = r * W * C;
    for (q = 0; q < left; q++) {
        int64_t s = cols[q];
        for (c = 0; c < C; c++) out[q * C + c] = s < 0 ? cval : io_sample(src, kind, base + s * C + c);
    }
    io_load(src, kind, base, W * C, out + left * C);
    for (q = left + W; q < Wp; q++) {
        int64_t s = cols[q];
        for (c = 0; c < C; c++) out[q * C + c] = s < 0 ? cval : io_sample(src, kind, base + s * C + c);
    }
}

#if defined(__GNUC__)
typedef float io_v8f __attribute__((vector_size(32)));
typedef int32_t io_v8i __attribute__((vector_size(32)));
typedef float io_uv8f __attribute__((vector_size(32), aligned(4)));
#endif

/* The range statistics of n floats, added into st: the extremes in one vector pass (NaN
 * compares false, so it is skipped), the counts only when some value is outside or NaN. */
TARGET_CLONES
static void io_stats_add(const float *v, Py_ssize_t n, io_stats *st)
{
    Py_ssize_t i = 0, below = 0, above = 0, nan = 0;
    float lo = st->lo, hi = st->hi;
    int odd = 0; /* a NaN seen */
    const float b = st->below_at, a = st->above_at;
#if defined(__GNUC__)
    if (n >= 8) {
        io_v8f vlo = *(const io_uv8f *)v, vhi = vlo;
        io_v8i vnan = vlo != vlo;
        for (i = 8; i + 8 <= n; i += 8) {
            io_v8f x = *(const io_uv8f *)(v + i);
            io_v8i m = x < vlo, M = x > vhi;
            vlo = (io_v8f)(((io_v8i)x & m) | ((io_v8i)vlo & ~m));
            vhi = (io_v8f)(((io_v8i)x & M) | ((io_v8i)vhi & ~M));
            vnan |= x != x;
        }
        for (int k = 0; k < 8; k++) {
            lo = vlo[k] < lo ? vlo[k] : lo;
            hi = vhi[k] > hi ? vhi[k] : hi;
            odd |= vnan[k] != 0;
        }
    }
#endif
    for (; i < n; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
        odd |= v[i] != v[i];
    }
    if (odd || lo < b || hi > a) { /* 32-bit counts (n is a chunk): they vectorize */
        for (Py_ssize_t j = 0; j < n; j += CHUNK) {
            Py_ssize_t end = n - j < CHUNK ? n : j + CHUNK;
            int32_t nb = 0, na = 0, nn = 0;
            for (i = j; i < end; i++) {
                nb += v[i] < b;
                na += v[i] > a;
                nn += v[i] != v[i];
            }
            below += nb;
            above += na;
            nan += nn;
        }
    }
    st->lo = lo;
    st->hi = hi;
    st->below += below;
    st->above += above;
    st->nan += nan;
}

/* to_depth's rounding, rint(clip(x * top, 0, top)) with the product in double, done in
 * float: the float product is the exact one rounded, monotonically, and every bound and
 * half-integer up to top is a float, so it lands on the same side of each; only when it
 * lands exactly on a half-integer (a tie in float, maybe not in double) can the two differ,
 * and then the caller redoes the chunk in double.  Returns whether that happened. */
#define IO_STORE_FAST(DST_T, TOP)                                                            \
    do {                                                                                    \
        DST_T *o = (DST_T *)dst + start;                                                     \
        int tie = 0;                                                                        \
        for (i = 0; i < n; i++) {                                                           \
            float x = v[i] * TOP##.0f;                                                      \
            x = x > 0.0f ? x : 0.0f; /* NaN fails x > 0: 0 */                               \
            x = x < TOP##.0f ? x : TOP##.0f;                                                \
            float r = nearbyintf(x);                                                        \
            tie |= fabsf(x - r) == 0.5f;                                                    \
            o[i] = (DST_T)r;                                                                \
        }                                                                                   \
        if (!tie) return;                                                                   \
        for (i = 0; i < n; i++) {                                                           \
            double x = (double)v[i] * TOP##.0;                                              \
            x = x > 0.0 ? (x < TOP##.0 ? x : TOP##.0) : 0.0;                                \
            o[i] = (DST_T)nearbyint(x);                                                     \
        }                                                                                   \
    } while (0)

/* dst[start + i] = v[i] rounded to the destination kind, as to_depth (NaN to 0) */
TARGET_CLONES
static void io_store(const float *v, void *dst, int kind, Py_ssize_t start, Py_ssize_t n)
{
    Py_ssize_t i;
    if (kind == KIND_U8) IO_STORE_FAST(uint8_t, 255);
    else if (kind == KIND_U16) IO_STORE_FAST(uint16_t, 65535);
    else memcpy((float *)dst + start, v, (size_t)n * sizeof(float));
}

/* One output row from its taps: into dst row `drow` (relative to the destination buffer),
 * straight for float32, else through an L1 chunk that is rounded and counted on the way. */
static void io_emit_row(const float *const *ptrs, const float *wts, Py_ssize_t nt, Py_ssize_t n,
                        void *dst, int dkind, Py_ssize_t drow, float *tmp, io_stats *st)
{
    Py_ssize_t x0;
    if (dkind == KIND_F32) {
        dot_rows_f32((float *)dst + drow * n, ptrs, wts, nt, 0, n);
        return;
    }
    for (x0 = 0; x0 < n; x0 += CHUNK) {
        Py_ssize_t len = n - x0 < CHUNK ? n - x0 : CHUNK;
        dot_rows_f32(tmp, ptrs, wts, nt, x0, len);
        io_stats_add(tmp, len, st);
        io_store(tmp, dst, dkind, drow * n + x0, len);
    }
}

/* corr2d_f32 of output rows [y0, y1) of stored samples; dst holds rows [y0, y1) only.
 * ring: kh * Wp * C floats; ptrs, wts: kh * kw taps; tmp: CHUNK floats. */
static void corr2d_io(const void *src, int skind, void *dst, int dkind, Py_ssize_t W,
                      Py_ssize_t C, const float *k, Py_ssize_t kh, Py_ssize_t kw,
                      const int64_t *rows, const int64_t *cols, Py_ssize_t lft, float cval,
                      Py_ssize_t y0, Py_ssize_t y1, float *ring, const float **ptrs, float *wts,
                      float *tmp, io_stats *st)
{
    const Py_ssize_t Wp = W + kw - 1;
    const Py_ssize_t n = W * C, rowlen = Wp * C;
    Py_ssize_t y, a, b, p, nt;
    Py_ssize_t filled_to = y0;
    for (y = y0; y < y1; y++) {
        for (p = filled_to; p < y + kh; p++)
            io_pad_row(src, skind, W, C, rows[p], cols, lft, Wp, cval, ring + (p % kh) * rowlen);
        if (filled_to < y + kh) filled_to = y + kh;
        nt = 0;
        for (a = 0; a < kh; a++) {
            const float *prow = ring + ((y + a) % kh) * rowlen;
            for (b = 0; b < kw; b++) {
                if (k[a * kw + b] == 0) continue;
                ptrs[nt] = prow + b * C;
                wts[nt] = k[a * kw + b];
                nt++;
            }
        }
        io_emit_row(ptrs, wts, nt, n, dst, dkind, y - y0, tmp, st);
    }
}

/* corrsep_f32 of output rows [y0, y1) of stored samples; dst holds rows [y0, y1) only.
 * A float32 source is read in place; other sources pass through a ring of converted rows
 * (padded row p in slot p mod (SEP_BLOCK + kh - 1)), each converted once.  The vertical
 * pass writes each result row straight into the middle of a padded row, whose few border
 * samples are then filled in, so the horizontal pass reads it with no copy.
 * scratch: SEP_BLOCK * Wp * C floats, then (float32 source: nothing)
 * (SEP_BLOCK + kh - 1) * W * C floats; ptrs, wts: max(kh, kw) taps; tmp: CHUNK floats. */
static void corrsep_io(const void *src, int skind, void *dst, int dkind, Py_ssize_t W,
                       Py_ssize_t C, const float *kv, Py_ssize_t kh, const float *kr,
                       Py_ssize_t kw, const int64_t *rows, const int64_t *cols, Py_ssize_t lft,
                       float cval, Py_ssize_t y0, Py_ssize_t y1, float *scratch,
                       const float **ptrs, float *wts, float *tmp, io_stats *st)
{
    const Py_ssize_t Wp = W + kw - 1, n = W * C, R = SEP_BLOCK + kh - 1, rowlen = Wp * C;
    float *vblock = scratch; /* SEP_BLOCK padded rows */
    float *ring = vblock + SEP_BLOCK * rowlen;
    Py_ssize_t yb, y, a, b, x0, q, c, nt, p;
    Py_ssize_t filled_to = y0; /* padded rows [y0, filled_to) are in the ring */
    float ccol = 0;
    for (a = 0; a < kh; a++) ccol += kv[a] * cval;
    for (yb = y0; yb < y1; yb += SEP_BLOCK) {
        Py_ssize_t nb = y1 - yb < SEP_BLOCK ? y1 - yb : SEP_BLOCK;
        if (skind != KIND_F32) {
            for (p = filled_to; p < yb + nb + kh - 1; p++)
                if (rows[p] >= 0) io_load(src, skind, rows[p] * n, n, ring + (p % R) * n);
            if (filled_to < yb + nb + kh - 1) filled_to = yb + nb + kh - 1;
        }
        for (x0 = 0; x0 < n; x0 += CHUNK) {
            Py_ssize_t len = n - x0 < CHUNK ? n - x0 : CHUNK;
            for (y = 0; y < nb; y++) {
                float *acc = vblock + y * rowlen + lft * C + x0;
                float cacc = 0;
                nt = 0;
                for (a = 0; a < kh; a++) {
                    int64_t r = rows[yb + y + a];
                    if (kv[a] == 0) continue;
                    if (r < 0) {
                        cacc += kv[a] * cval;
                        continue;
                    }
                    ptrs[nt] = skind == KIND_F32 ? (const float *)src + r * n
                                                 : ring + ((yb + y + a) % R) * n;
                    wts[nt] = kv[a];
                    nt++;
                }
                dot_rows_f32(acc, ptrs, wts, nt, x0, len);
                if (cacc != 0) {
                    for (q = 0; q < len; q++) acc[q] += cacc;
                }
            }
        }
        for (y = 0; y < nb; y++) {
            float *prow = vblock + y * rowlen;
            const float *vrow = prow + lft * C;
            for (q = 0; q < lft; q++) {
                int64_t s = cols[q];
                for (c = 0; c < C; c++) prow[q * C + c] = s < 0 ? ccol : vrow[s * C + c];
            }
            for (q = lft + W; q < Wp; q++) {
                int64_t s = cols[q];
                for (c = 0; c < C; c++) prow[q * C + c] = s < 0 ? ccol : vrow[s * C + c];
            }
            nt = 0;
            for (b = 0; b < kw; b++) {
                if (kr[b] == 0) continue;
                ptrs[nt] = prow + b * C;
                wts[nt] = kr[b];
                nt++;
            }
            io_emit_row(ptrs, wts, nt, n, dst, dkind, yb + y - y0, tmp, st);
        }
    }
}
