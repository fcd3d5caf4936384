/* 64-bit BLAKE2b digests of identities and subjects: streams/events.py `digest64`.
 *
 * Every event is digested twice (its CloudEvents identity, its subject), and through
 * hashlib each took about half a microsecond: the text encoded, a hash object made,
 * its digest copied out and read as an int. The digest must stay BLAKE2b with an
 * 8-byte output (the numbers are journaled); this is the reference algorithm of
 * RFC 7693, fed the UTF-8 of the text (an ASCII one without a copy).
 * tests/unit/test_digests.py holds it to hashlib.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

typedef struct {
    uint64_t h[8];
    uint64_t t; /* bytes compressed so far: texts are far below 2**64 bytes */
    uint8_t buf[128];
    size_t buflen;
} State;

static inline uint64_t
rotr(uint64_t x, int n)
{
    return (x >> n) | (x << (64 - n));
}

static inline uint64_t
load64(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

#define G(a, b, c, d, x, y)        \
    do {                           \
        v[a] = v[a] + v[b] + (x);  \
        v[d] = rotr(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];        \
        v[b] = rotr(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);  \
        v[d] = rotr(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];        \
        v[b] = rotr(v[b] ^ v[c], 63); \
    } while (0)

static void
compress(State *s, const uint8_t *block, int last)
{
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        m[i] = load64(block + 8 * i);
    }
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= s->t;
    if (last) {
        v[14] = ~v[14];
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *sg = SIGMA[r];
        G(0, 4, 8, 12, m[sg[0]], m[sg[1]]);
        G(1, 5, 9, 13, m[sg[2]], m[sg[3]]);
        G(2, 6, 10, 14, m[sg[4]], m[sg[5]]);
        G(3, 7, 11, 15, m[sg[6]], m[sg[7]]);
        G(0, 5, 10, 15, m[sg[8]], m[sg[9]]);
        G(1, 6, 11, 12, m[sg[10]], m[sg[11]]);
        G(2, 7, 8, 13, m[sg[12]], m[sg[13]]);
        G(3, 4, 9, 14, m[sg[14]], m[sg[15]]);
    }
    for (int i = 0; i < 8; i++) {
        s->h[i] ^= v[i] ^ v[i + 8];
    }
}

static void
begin(State *s)
{
    memcpy(s->h, IV, sizeof IV);
    s->h[0] ^= 0x01010000ULL ^ 8; /* no key, an 8-byte digest */
    s->t = 0;
    s->buflen = 0;
}

static void
update(State *s, const uint8_t *in, size_t n)
{
    /* The last block is compressed by `finish` alone, flagged as the last. */
    while (n > 0) {
        size_t fill = 128 - s->buflen;
        if (n > fill) {
            memcpy(s->buf + s->buflen, in, fill);
            s->t += 128;
            compress(s, s->buf, 0);
            s->buflen = 0;
            in += fill;
            n -= fill;
        }
        else {
            memcpy(s->buf + s->buflen, in, n);
            s->buflen += n;
            n = 0;
        }
    }
}

static PyObject *
finish(State *s)
{
    s->t += s->buflen;
    memset(s->buf + s->buflen, 0, 128 - s->buflen);
    compress(s, s->buf, 1);
    /* hashlib's 8 bytes are h[0] little-endian; digest64 reads them big-endian. */
    uint64_t out = __builtin_bswap64(s->h[0]);
    return PyLong_FromUnsignedLongLong(out ? out : 1);
}

static int
feed(State *s, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "a digest is of a str, not %.100s",
                     Py_TYPE(text)->tp_name);
        return -1;
    }
    if (PyUnicode_READY(text) < 0) {
        return -1;
    }
    if (PyUnicode_IS_ASCII(text)) { /* its characters are its UTF-8 */
        update(s, (const uint8_t *)PyUnicode_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
        return 0;
    }
    /* A copy of its own, not PyUnicode_AsUTF8AndSize: that one stays attached to the
     * string, and subjects are kept for weeks as keys of a district's state. */
    PyObject *utf8 = PyUnicode_AsUTF8String(text); /* raises on lone surrogates */
    if (utf8 == NULL) {
        return -1;
    }
    update(s, (const uint8_t *)PyBytes_AS_STRING(utf8), (size_t)PyBytes_GET_SIZE(utf8));
    Py_DECREF(utf8);
    return 0;
}

static PyObject *
digest64(PyObject *Py_UNUSED(module), PyObject *text)
{
    State s;
    begin(&s);
    if (feed(&s, text) < 0) {
        return NULL;
    }
    return finish(&s);
}

static PyObject *
identity(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "identity(source, id) takes two str");
        return NULL;
    }
    State s;
    begin(&s);
    if (feed(&s, args[0]) < 0) {
        return NULL;
    }
    update(&s, (const uint8_t *)"", 1); /* the NUL between source and id */
    if (feed(&s, args[1]) < 0) {
        return NULL;
    }
    return finish(&s);
}

static PyMethodDef methods[] = {
    {"digest64", (PyCFunction)digest64, METH_O,
     "digest64(text) -> int: BLAKE2b-64 of the UTF-8 of text, read big-endian; 0 becomes 1."},
    {"identity", (PyCFunction)(void (*)(void))identity, METH_FASTCALL,
     "identity(source, id) -> int: digest64 of source, a NUL and id."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "streams._digests",
    "64-bit BLAKE2b digests of identities and subjects (streams/events.py digest64).",
    0,
    methods,
};

PyMODINIT_FUNC
PyInit__digests(void)
{
    return PyModule_Create(&module);
}
