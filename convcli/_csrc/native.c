/* convcli._native: direct (spatial) correlation in C for the `direct` backend.
 *
 * Two entry points, each computing the output rows [y0, y1) of one image with the
 * GIL released, so that Python threads can run row bands on several cores:
 *
 *   correlate2d(src, dst, H, W, C, weights, kh, kw, rows, cols, left, cval, y0, y1)
 *   correlate_separable(src, dst, H, W, C, kv, kh, kr, kw, rows, cols, left, cval, y0, y1)
 *
 * and correlate_io (filter_io.h), which reads uint8/uint16/float32 stored samples and writes
 * float32 or rounded uint8/uint16 output rows, for the strip engine.
 *
 * src and dst are C-contiguous (H, W, C) float32 or float64 buffers (the same type),
 * weights/kv/kr are of that type, rows/cols are int64 border index maps (see filter_impl.h).
 * All validation of shapes happens here too, so a wrong call raises ValueError
 * instead of reading out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define TARGET_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TARGET_CLONES
#endif

/* Scratch memory (a strip's ring of rows, a few MB) kept per thread between calls, up to
 * SCRATCH_KEEP bytes: fresh pages each cost a fault and the kernel's clearing, which took
 * about a fifth of a 12-MP JPEG blur's CPU time when every strip allocated its own.  A
 * larger request is allocated and freed by the call. */
#define SCRATCH_KEEP ((size_t)64 << 20)
#if defined(__GNUC__)
static __thread void *kept_scratch;
static __thread size_t kept_bytes;

static void *scratch_get(size_t bytes)
{
    if (bytes > SCRATCH_KEEP) return PyMem_RawMalloc(bytes);
    if (bytes > kept_bytes) {
        PyMem_RawFree(kept_scratch);
        kept_scratch = PyMem_RawMalloc(bytes);
        kept_bytes = kept_scratch != NULL ? bytes : 0;
    }
    return kept_scratch;
}

static void scratch_put(void *p)
{
    if (p != NULL && p != kept_scratch) PyMem_RawFree(p);
}
#else
static void *scratch_get(size_t bytes) { return PyMem_RawMalloc(bytes); }
static void scratch_put(void *p) { PyMem_RawFree(p); }
#endif

#define T float
#define SFX f32
#include "filter_impl.h"
#undef T
#undef SFX

#define T double
#define SFX f64
#include "filter_impl.h"
#undef T
#undef SFX

#include "filter_io.h"

static int check_maps(Py_buffer *rows, Py_ssize_t nrows, Py_ssize_t H, Py_buffer *cols,
                      Py_ssize_t ncols, Py_ssize_t W, Py_ssize_t left)
{
    Py_ssize_t i;
    const int64_t *r = (const int64_t *)rows->buf, *c = (const int64_t *)cols->buf;
    if (rows->len != nrows * (Py_ssize_t)sizeof(int64_t) ||
        cols->len != ncols * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "border index maps have the wrong length");
        return -1;
    }
    for (i = 0; i < nrows; i++) {
        if (r[i] < -1 || r[i] >= H) {
            PyErr_SetString(PyExc_ValueError, "row index map out of range");
            return -1;
        }
    }
    for (i = 0; i < ncols; i++) {
        if (c[i] < -1 || c[i] >= W) {
            PyErr_SetString(PyExc_ValueError, "column index map out of range");
            return -1;
        }
    }
    if (left < 0 || left >= ncols - W + 1) {
        PyErr_SetString(PyExc_ValueError, "left border width out of range");
        return -1;
    }
    for (i = 0; i < W; i++) {
        if (c[left + i] != i) {
            PyErr_SetString(PyExc_ValueError, "column index map is not the identity inside");
            return -1;
        }
    }
    return 0;
}

static int check_images(Py_buffer *src, Py_buffer *dst, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t C, Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t *itemsize)
{
    if (H <= 0 || W <= 0 || C <= 0) {
        PyErr_SetString(PyExc_ValueError, "image dimensions must be positive");
        return -1;
    }
    Py_ssize_t count = H * W * C;
    if (src->len == count * 4) *itemsize = 4;
    else if (src->len == count * 8) *itemsize = 8;
    else {
        PyErr_SetString(PyExc_ValueError, "source buffer does not match H*W*C samples");
        return -1;
    }
    if (dst->len != src->len) {
        PyErr_SetString(PyExc_ValueError, "destination buffer size differs from source");
        return -1;
    }
    if (y0 < 0 || y1 > H || y0 > y1) {
        PyErr_SetString(PyExc_ValueError, "row range out of bounds");
        return -1;
    }
    return 0;
}

static PyObject *py_correlate2d(PyObject *self, PyObject *args)
{
    Py_buffer src, dst, k, rows, cols;
    Py_ssize_t H, W, C, kh, kw, left, y0, y1, isz = 0;
    double cval;
    PyObject *result = NULL;
    void *scratch = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nnny*nny*y*ndnn", &src, &dst, &H, &W, &C, &k, &kh, &kw,
                          &rows, &cols, &left, &cval, &y0, &y1))
        return NULL;
    if (check_images(&src, &dst, H, W, C, y0, y1, &isz) < 0) goto done;
    if (kh <= 0 || kw <= 0 || k.len != kh * kw * isz) {
        PyErr_SetString(PyExc_ValueError, "kernel buffer does not match kh*kw samples");
        goto done;
    }
    if (check_maps(&rows, H + kh - 1, H, &cols, W + kw - 1, W, left) < 0) goto done;
    {
        size_t ring = (size_t)(kh * (W + kw - 1) * C) * (size_t)isz;
        size_t taps = (size_t)(kh * kw);
        scratch = scratch_get(ring + taps * (sizeof(void *) + (size_t)isz));
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        void *ptrs = (char *)scratch + ring;
        void *wts = (char *)ptrs + taps * sizeof(void *);
        Py_BEGIN_ALLOW_THREADS
        if (isz == 4)
            corr2d_f32((const float *)src.buf, (float *)dst.buf, H, W, C, (const float *)k.buf,
                       kh, kw, (const int64_t *)rows.buf, (const int64_t *)cols.buf, left,
                       (float)cval, y0, y1, (float *)scratch, (const float **)ptrs,
                       (float *)wts);
        else
            corr2d_f64((const double *)src.buf, (double *)dst.buf, H, W, C,
                       (const double *)k.buf, kh, kw, (const int64_t *)rows.buf,
                       (const int64_t *)cols.buf, left, cval, y0, y1, (double *)scratch,
                       (const double **)ptrs, (double *)wts);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    scratch_put(scratch);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&k);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    return result;
}

static PyObject *py_correlate_separable(PyObject *self, PyObject *args)
{
    Py_buffer src, dst, kv, kr, rows, cols;
    Py_ssize_t H, W, C, kh, kw, left, y0, y1, isz = 0;
    double cval;
    PyObject *result = NULL;
    void *scratch = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nnny*ny*ny*y*ndnn", &src, &dst, &H, &W, &C, &kv, &kh, &kr,
                          &kw, &rows, &cols, &left, &cval, &y0, &y1))
        return NULL;
    if (check_images(&src, &dst, H, W, C, y0, y1, &isz) < 0) goto done;
    if (kh <= 0 || kw <= 0 || kv.len != kh * isz || kr.len != kw * isz) {
        PyErr_SetString(PyExc_ValueError, "kernel factor buffers do not match kh and kw");
        goto done;
    }
    if (check_maps(&rows, H + kh - 1, H, &cols, W + kw - 1, W, left) < 0) goto done;
    {
        size_t buf = (size_t)(((SEP_BLOCK + 1) * W + kw - 1) * C) * (size_t)isz;
        size_t taps = (size_t)(kh > kw ? kh : kw);
        scratch = scratch_get(buf + taps * (sizeof(void *) + (size_t)isz));
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        void *ptrs = (char *)scratch + buf;
        void *wts = (char *)ptrs + taps * sizeof(void *);
        Py_BEGIN_ALLOW_THREADS
        if (isz == 4)
            corrsep_f32((const float *)src.buf, (float *)dst.buf, H, W, C,
                        (const float *)kv.buf, kh, (const float *)kr.buf, kw,
                        (const int64_t *)rows.buf, (const int64_t *)cols.buf, left, (float)cval,
                        y0, y1, (float *)scratch, (const float **)ptrs, (float *)wts);
        else
            corrsep_f64((const double *)src.buf, (double *)dst.buf, H, W, C,
                        (const double *)kv.buf, kh, (const double *)kr.buf, kw,
                        (const int64_t *)rows.buf, (const int64_t *)cols.buf, left, cval, y0, y1,
                        (double *)scratch, (const double **)ptrs, (double *)wts);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    scratch_put(scratch);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&kr);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    return result;
}

/* correlate_io(src, skind, dst, dkind, H, W, C, k1, kh, k2, kw, rows, cols, left, cval, y0,
 *              y1, below, above) -> (min, max, n_below, n_above, n_nan)
 * Output rows [y0, y1) of the float32 correlation of stored samples src (H, W, C) of kind
 * skind (0 float32, 1 uint8, 2 uint16) into dst, which holds just those rows, of kind dkind
 * (uint8/uint16: rounded as to_depth, and the statistics of the float results are returned;
 * float32: min and max are NaN, counts 0).  k2 empty: k1 is the kh x kw kernel (float32);
 * else k1 (kh) and k2 (kw) are the column and row factors of a separable one. */
static PyObject *py_correlate_io(PyObject *self, PyObject *args)
{
    Py_buffer src, dst, k1, k2, rows, cols;
    int skind, dkind;
    Py_ssize_t H, W, C, kh, kw, left, y0, y1;
    double cval, below, above;
    PyObject *result = NULL;
    void *scratch = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iw*innny*ny*ny*y*ndnndd", &src, &skind, &dst, &dkind, &H,
                          &W, &C, &k1, &kh, &k2, &kw, &rows, &cols, &left, &cval, &y0, &y1,
                          &below, &above))
        return NULL;
    const int sep = k2.len != 0;
    if (skind < 0 || skind > 2 || dkind < 0 || dkind > 2) {
        PyErr_SetString(PyExc_ValueError, "sample kind must be 0 (float32), 1 (uint8) or 2 (uint16)");
        goto done;
    }
    if (H <= 0 || W <= 0 || C <= 0) {
        PyErr_SetString(PyExc_ValueError, "image dimensions must be positive");
        goto done;
    }
    if (y0 < 0 || y1 > H || y0 > y1) {
        PyErr_SetString(PyExc_ValueError, "row range out of bounds");
        goto done;
    }
    if (src.len != H * W * C * kind_size(skind) || dst.len != (y1 - y0) * W * C * kind_size(dkind)) {
        PyErr_SetString(PyExc_ValueError, "sample buffers do not match H*W*C and y1 - y0 rows");
        goto done;
    }
    if (kh <= 0 || kw <= 0 ||
        (sep ? (k1.len != kh * 4 || k2.len != kw * 4) : k1.len != kh * kw * 4)) {
        PyErr_SetString(PyExc_ValueError, "kernel buffers do not match kh and kw (float32)");
        goto done;
    }
    if (check_maps(&rows, H + kh - 1, H, &cols, W + kw - 1, W, left) < 0) goto done;
    {
        const Py_ssize_t n = W * C, Wp = W + kw - 1;
        size_t floats = sep ? (size_t)(SEP_BLOCK * Wp * C) +
                                  (skind == KIND_F32 ? 0 : (size_t)((SEP_BLOCK + kh - 1) * n))
                            : (size_t)(kh * Wp * C);
        size_t taps = sep ? (size_t)(kh > kw ? kh : kw) : (size_t)(kh * kw);
        floats += CHUNK + taps;
        scratch = scratch_get(floats * sizeof(float) + taps * sizeof(void *));
        if (scratch == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        const float **ptrs = (const float **)scratch;
        float *wts = (float *)(ptrs + taps);
        float *tmp = wts + taps;
        float *work = tmp + CHUNK;
        io_stats st = {INFINITY, -INFINITY, 0, 0, 0, float_at_or_above(below),
                       float_at_or_below(above)};
        Py_BEGIN_ALLOW_THREADS
        if (sep)
            corrsep_io(src.buf, skind, dst.buf, dkind, W, C, (const float *)k1.buf, kh,
                       (const float *)k2.buf, kw, (const int64_t *)rows.buf,
                       (const int64_t *)cols.buf, left, (float)cval, y0, y1, work, ptrs, wts,
                       tmp, &st);
        else
            corr2d_io(src.buf, skind, dst.buf, dkind, W, C, (const float *)k1.buf, kh, kw,
                      (const int64_t *)rows.buf, (const int64_t *)cols.buf, left, (float)cval,
                      y0, y1, work, ptrs, wts, tmp, &st);
        Py_END_ALLOW_THREADS
        if (dkind == KIND_F32 || y0 == y1) st.lo = st.hi = NAN;
        result = Py_BuildValue("ddnnn", (double)st.lo, (double)st.hi, st.below, st.above, st.nan);
    }
done:
    scratch_put(scratch);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&k1);
    PyBuffer_Release(&k2);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    return result;
}

/* PNG row unfiltering (filter types 0-4, non-interlaced), used to read 16-bit colour PNGs
 * that Pillow would reduce to 8 bits: png_unfilter(raw, out, height, stride, bpp). */
static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

static PyObject *py_png_unfilter(PyObject *self, PyObject *args)
{
    Py_buffer raw, out;
    Py_ssize_t height, stride, bpp, y, x;
    PyObject *result = NULL;
    int bad = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*nnn", &raw, &out, &height, &stride, &bpp)) return NULL;
    if (height < 0 || stride <= 0 || bpp <= 0 || raw.len < height * (stride + 1) ||
        out.len < height * stride) {
        PyErr_SetString(PyExc_ValueError, "PNG data shorter than its header says");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *in = (const unsigned char *)raw.buf;
    unsigned char *dst = (unsigned char *)out.buf;
    for (y = 0; y < height && bad < 0; y++) {
        int ftype = in[y * (stride + 1)];
        const unsigned char *f = in + y * (stride + 1) + 1;
        unsigned char *cur = dst + y * stride;
        const unsigned char *prev = y > 0 ? dst + (y - 1) * stride : NULL;
        for (x = 0; x < stride; x++) {
            int a = x >= bpp ? cur[x - bpp] : 0;
            int b = prev ? prev[x] : 0;
            int c = (prev && x >= bpp) ? prev[x - bpp] : 0;
            int v;
            switch (ftype) {
            case 0: v = f[x]; break;
            case 1: v = f[x] + a; break;
            case 2: v = f[x] + b; break;
            case 3: v = f[x] + ((a + b) >> 1); break;
            case 4: v = f[x] + paeth(a, b, c); break;
            default: v = 0; bad = ftype; break;
            }
            cur[x] = (unsigned char)(v & 0xff);
        }
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "invalid PNG filter type %d", bad);
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    return result;
}

/* to_depth(src, dst, top, kind): dst[i] = rint(clip(src[i] * top, 0, top)), the product and
 * the rounding in double (round half to even, as numpy.rint), NaN to 0.  src: float32
 * (kind 0) or float64 (kind 1); dst: uint8 (top 255) or uint16 (top 65535), same length. */
#define TO_DEPTH_LOOP(SRC_T, DST_T)                                                          \
    do {                                                                                    \
        const SRC_T *in = (const SRC_T *)src.buf;                                           \
        DST_T *o = (DST_T *)dst.buf;                                                         \
        for (Py_ssize_t i = 0; i < n; i++) {                                                \
            double v = (double)in[i] * top;                                                 \
            v = v > 0.0 ? (v < top ? v : top) : 0.0; /* NaN fails v > 0: 0 */             \
            o[i] = (DST_T)nearbyint(v);                                                     \
        }                                                                                   \
    } while (0)

TARGET_CLONES static void to_depth_f32_u8(Py_buffer src, Py_buffer dst, Py_ssize_t n, double top)
{ TO_DEPTH_LOOP(float, uint8_t); }
TARGET_CLONES static void to_depth_f32_u16(Py_buffer src, Py_buffer dst, Py_ssize_t n, double top)
{ TO_DEPTH_LOOP(float, uint16_t); }
TARGET_CLONES static void to_depth_f64_u8(Py_buffer src, Py_buffer dst, Py_ssize_t n, double top)
{ TO_DEPTH_LOOP(double, uint8_t); }
TARGET_CLONES static void to_depth_f64_u16(Py_buffer src, Py_buffer dst, Py_ssize_t n, double top)
{ TO_DEPTH_LOOP(double, uint16_t); }

static PyObject *py_to_depth(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    double top;
    int kind;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*di", &src, &dst, &top, &kind)) return NULL;
    Py_ssize_t size = kind ? 8 : 4;
    Py_ssize_t width = top > 255.0 ? 2 : 1;
    Py_ssize_t n = src.len / size;
    if ((kind != 0 && kind != 1) || (top != 255.0 && top != 65535.0) || src.len % size ||
        dst.len != n * width) {
        PyErr_SetString(PyExc_ValueError, "to_depth: mismatched buffers");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 0 && width == 1) to_depth_f32_u8(src, dst, n, top);
    else if (kind == 0) to_depth_f32_u16(src, dst, n, top);
    else if (width == 1) to_depth_f64_u8(src, dst, n, top);
    else to_depth_f64_u16(src, dst, n, top);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* count_outside(src, kind, below, above) -> (n_below, n_above): how many float32 (kind 0) or
 * float64 (kind 1) values are < below and > above (NaN is neither), in one vectorized pass. */
#define COUNT_LOOP(SRC_T)                                                                    \
    do {                                                                                    \
        const SRC_T *in = (const SRC_T *)src.buf;                                           \
        for (Py_ssize_t i = 0; i < n; i++) {                                                \
            nb += (double)in[i] < below;                                                    \
            na += (double)in[i] > above;                                                    \
        }                                                                                   \
    } while (0)

TARGET_CLONES static void count_f32(Py_buffer src, Py_ssize_t n, double below, double above,
                                    Py_ssize_t *pnb, Py_ssize_t *pna)
{
    Py_ssize_t nb = 0, na = 0;
    COUNT_LOOP(float);
    *pnb = nb; *pna = na;
}

TARGET_CLONES static void count_f64(Py_buffer src, Py_ssize_t n, double below, double above,
                                    Py_ssize_t *pnb, Py_ssize_t *pna)
{
    Py_ssize_t nb = 0, na = 0;
    COUNT_LOOP(double);
    *pnb = nb; *pna = na;
}

static PyObject *py_count_outside(PyObject *self, PyObject *args)
{
    Py_buffer src;
    int kind;
    double below, above;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*idd", &src, &kind, &below, &above)) return NULL;
    Py_ssize_t size = kind ? 8 : 4;
    if ((kind != 0 && kind != 1) || src.len % size) {
        PyBuffer_Release(&src);
        PyErr_SetString(PyExc_ValueError, "count_outside: bad buffer");
        return NULL;
    }
    Py_ssize_t n = src.len / size, nb = 0, na = 0;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 0) count_f32(src, n, below, above, &nb, &na);
    else count_f64(src, n, below, above, &nb, &na);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    return Py_BuildValue("nn", nb, na);
}

static PyMethodDef methods[] = {
    {"count_outside", py_count_outside, METH_VARARGS,
     "count_outside(src, kind, below, above) -> (n_below, n_above)"},
    {"to_depth", py_to_depth, METH_VARARGS,
     "to_depth(src, dst, top, kind): round [0, 1] floats to uint8/uint16 (kind 0: float32)"},
    {"png_unfilter", py_png_unfilter, METH_VARARGS,
     "png_unfilter(raw, out, height, stride, bpp): undo PNG row filters"},
    {"correlate_io", py_correlate_io, METH_VARARGS,
     "correlate_io(src, skind, dst, dkind, H, W, C, k1, kh, k2, kw, rows, cols, left, cval, "
     "y0, y1, below, above) -> (min, max, n_below, n_above, n_nan)"},
    {"correlate2d", py_correlate2d, METH_VARARGS,
     "correlate2d(src, dst, H, W, C, weights, kh, kw, rows, cols, left, cval, y0, y1)"},
    {"correlate_separable", py_correlate_separable, METH_VARARGS,
     "correlate_separable(src, dst, H, W, C, kv, kh, kr, kw, rows, cols, left, cval, y0, y1)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "convcli._native", "Direct correlation kernels (C).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&moduledef); }
