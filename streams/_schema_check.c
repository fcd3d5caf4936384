/* Runs the programs of streams/schema_program.py on decoded records: valid, invalid, unsure.
 *
 * jsonschema-rs turns each decoded dict into its own values before checking it, which
 * took most of its 1.3 us per event. This reads the dict in place. It answers VALID or
 * INVALID only where it models the schema exactly and UNSURE everywhere else (a format
 * in any but its plainest form, a float where a whole number may be asked for, an
 * integer beyond 64 bits, a string holding a lone surrogate, a type JSON does not have);
 * UNSURE is always a safe answer, so every check returns at its first answer that is
 * not VALID. streams/validation.py asks jsonschema-rs about anything not VALID.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

enum { INVALID = 0, VALID = 1, UNSURE = 2, FAILED = -1 };
/* Opcodes and type bits: the same numbers as streams/schema_program.py. */
enum { OP_TYPE, OP_CONST, OP_ENUM, OP_LENGTH, OP_PATTERN, OP_FORMAT, OP_MINIMUM,
       OP_MAXIMUM, OP_PROPERTIES, OP_IF, OP_NOT, OP_SPANS };
enum { T_STRING = 1, T_NUMBER = 2, T_INTEGER = 4, T_BOOLEAN = 8, T_NULL = 16,
       T_OBJECT = 32, T_ARRAY = 64 };
enum { F_DATE_TIME = 1, F_URI_REFERENCE = 2, F_URI = 3 };
#define DEAD 0xFFFF

/* Whether the value is one JSON has, with the type bit it carries (0: not one). */
static int
json_type(PyObject *v)
{
    if (PyUnicode_CheckExact(v)) return T_STRING;
    if (v == Py_None) return T_NULL;
    if (PyBool_Check(v)) return T_BOOLEAN;
    if (PyLong_CheckExact(v)) return T_INTEGER;
    if (PyFloat_CheckExact(v)) return T_NUMBER;
    if (PyDict_CheckExact(v)) return T_OBJECT;
    if (PyList_CheckExact(v)) return T_ARRAY;
    return 0;
}

/* A string's characters, or UNSURE for one holding a lone surrogate: JSON cannot carry
 * it as UTF-8, and jsonschema-rs would refuse the whole record. */
static int
plain_string(PyObject *s)
{
    if (PyUnicode_READY(s) < 0) return FAILED;
    if (PyUnicode_IS_ASCII(s)) return VALID;
    int kind = PyUnicode_KIND(s);
    if (kind == PyUnicode_1BYTE_KIND) return VALID;
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 0xD800 && c <= 0xDFFF) return UNSURE;
    }
    return VALID;
}

static inline int
in_bitmap(const unsigned char *bits, Py_UCS4 c)
{
    return c < 128 && (bits[c >> 3] >> (c & 7)) & 1;
}

static inline int
digits(const Py_UCS1 *s, int width, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM), years 1000-9999, real days: VALID;
 * any other form (a leap second, a lower-case t or z, no seconds) UNSURE. */
static int
date_time(const Py_UCS1 *s, Py_ssize_t n)
{
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se, oh, om;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return UNSURE;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return UNSURE;
    if (y < 1000 || mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59 || d < 1) return UNSURE;
    int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    if (d > DAYS[mo - 1] + (mo == 2 && leap)) return UNSURE;
    Py_ssize_t i = 19;
    if (i < n && s[i] == '.') {
        Py_ssize_t j = i + 1;
        while (j < n && s[j] >= '0' && s[j] <= '9') j++;
        if (j == i + 1 || j - i - 1 > 9) return UNSURE;
        i = j;
    }
    if (i + 1 == n && s[i] == 'Z') return VALID;
    if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':') return UNSURE;
    if (digits(s + i + 1, 2, &oh) || digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
        return UNSURE;
    return VALID;
}

static inline int
unreserved_or_slash(Py_UCS1 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

/* An absolute path of unreserved characters (RFC 3986 path-absolute): VALID; else UNSURE. */
static int
uri_reference(const Py_UCS1 *s, Py_ssize_t n)
{
    if (n < 1 || s[0] != '/' || (n > 1 && s[1] == '/')) return UNSURE;
    for (Py_ssize_t i = 1; i < n; i++) {
        if (!unreserved_or_slash(s[i])) return UNSURE;
    }
    return VALID;
}

/* http(s)://host/path with a lower-case host of letters, digits, dots and hyphens that
 * starts and ends with a letter or digit, and a path of unreserved characters: VALID. */
static int
uri(const Py_UCS1 *s, Py_ssize_t n)
{
    Py_ssize_t i;
    if (n > 8 && memcmp(s, "https://", 8) == 0) i = 8;
    else if (n > 7 && memcmp(s, "http://", 7) == 0) i = 7;
    else return UNSURE;
    Py_ssize_t host = i;
    while (i < n && s[i] != '/') {
        Py_UCS1 c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return UNSURE;
        i++;
    }
    if (i == host) return UNSURE;
    Py_UCS1 a = s[host], z = s[i - 1];
    if (a == '.' || a == '-' || z == '.' || z == '-') return UNSURE;
    for (; i < n; i++) {
        if (!unreserved_or_slash(s[i])) return UNSURE;
    }
    return VALID;
}

/* Whether the record holds only what JSON can: jsonschema-rs refuses anything else
 * (ValueError, the "not JSON" reason), wherever it sits, constrained or not. */
static int
plain_json(PyObject *v, int depth)
{
    if (depth > 100) return UNSURE;
    switch (json_type(v)) {
    case T_STRING: return plain_string(v);
    case T_NULL: case T_BOOLEAN: return VALID;
    case T_INTEGER: {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(v, &overflow);
        return overflow ? UNSURE : VALID;
    }
    case T_NUMBER: return isfinite(PyFloat_AS_DOUBLE(v)) ? VALID : UNSURE;
    case T_OBJECT: {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(v, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) return UNSURE;
            int r = plain_string(key);
            if (r == VALID) r = plain_json(value, depth + 1);
            if (r != VALID) return r;
        }
        return VALID;
    }
    case T_ARRAY:
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            int r = plain_json(PyList_GET_ITEM(v, i), depth + 1);
            if (r != VALID) return r;
        }
        return VALID;
    default: return UNSURE;
    }
}

/* --- programs, read once from schema_program's tuples into C structures ------------ */

typedef struct Node Node;

typedef struct {
    int op;
    long a, b;               /* TYPE: mask; LENGTH, SPANS: least, most; FORMAT: code */
    double bound;            /* MINIMUM, MAXIMUM */
    PyObject *value;         /* CONST: the value; ENUM: the tuple (borrowed from source) */
    PyObject *index;         /* PROPERTIES: name -> position in children (owned) */
    const unsigned char *bits;  /* SPANS: fixed positions' bitmaps; PATTERN: accepting */
    const unsigned char *tail;  /* SPANS: the repeated class's bitmap */
    const uint16_t *table;   /* PATTERN: transitions */
    Py_ssize_t size;         /* SPANS: fixed positions; PATTERN: states */
    int additional;          /* PROPERTIES: 0 anything, 1 nothing, 2 sub[0] */
    Node *sub[3];            /* IF: if, then, else; NOT: sub[0]; PROPERTIES: extra, names */
    Node *children;          /* PROPERTIES: one per named property */
    Py_ssize_t nchildren;
    char *is_required;       /* PROPERTIES: per child, whether it is required */
    Py_ssize_t nrequired;    /* PROPERTIES: required names that are named properties */
    PyObject *unnamed;       /* PROPERTIES: required names that are not (owned tuple) */
    struct Seen *seen;       /* PROPERTIES: keys met before (see Seen) */
} Check;

/* Decoders hand out the same key objects again and again (orjson keeps a cache of
 * them): a key met before, held here so that its address cannot be reused, skips the
 * propertyNames check it passed and the lookup of its property. */
#define SEEN_SLOTS 64
struct Seen {
    PyObject *key[SEEN_SLOTS];
    Py_ssize_t child[SEEN_SLOTS]; /* -1: not a named property */
};

static inline size_t
seen_slot(PyObject *key)
{
    return ((uintptr_t)key >> 4) % SEEN_SLOTS;
}

struct Node {
    Py_ssize_t n;
    Check *checks;
};

static void
free_node(Node *node)
{
    if (node == NULL || node->checks == NULL) return;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        Check *c = &node->checks[i];
        for (int k = 0; k < 3; k++) {
            if (c->sub[k] != NULL) {
                free_node(c->sub[k]);
                PyMem_Free(c->sub[k]);
            }
        }
        for (Py_ssize_t k = 0; k < c->nchildren; k++) free_node(&c->children[k]);
        PyMem_Free(c->children);
        PyMem_Free(c->is_required);
        Py_XDECREF(c->index);
        Py_XDECREF(c->unnamed);
        if (c->seen != NULL) {
            for (int k = 0; k < SEEN_SLOTS; k++) Py_XDECREF(c->seen->key[k]);
            PyMem_Free(c->seen);
        }
    }
    PyMem_Free(node->checks);
    node->checks = NULL;
}

static int build(PyObject *tuple, Node *out, int depth);

static int
malformed(const char *what)
{
    PyErr_Format(PyExc_ValueError, "a schema program is malformed: %s", what);
    return -1;
}

static int
build_sub(PyObject *tuple, Node **out, int depth)
{
    if (tuple == Py_None) return 0;
    *out = PyMem_Calloc(1, sizeof(Node));
    if (*out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return build(tuple, *out, depth + 1);
}

/* What equal_scalar compares against (schema_program._scalar compiles nothing else). */
static int
scalar(PyObject *v)
{
    return v == Py_None || PyBool_Check(v) || PyUnicode_CheckExact(v);
}

static int
build_check(PyObject *t, Check *c, int depth)
{
    static const Py_ssize_t SIZES[] = {2, 2, 2, 3, 3, 2, 2, 2, 5, 4, 2, 5};
    if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) < 1) return malformed("a constraint");
    long op = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
    if (op == -1 && PyErr_Occurred()) return -1;
    if (op < 0 || op > OP_SPANS || PyTuple_GET_SIZE(t) != SIZES[op])
        return malformed("an unknown opcode or a wrong size");
    c->op = (int)op;
    PyObject *x1 = PyTuple_GET_ITEM(t, 1);
    switch (op) {
    case OP_TYPE:
    case OP_FORMAT:
        c->a = PyLong_AsLong(x1);
        return PyErr_Occurred() ? -1 : 0;
    case OP_CONST:
        if (!scalar(x1)) return malformed("a const that is not a string, a boolean or null");
        c->value = x1;
        return 0;
    case OP_ENUM:
        if (!PyTuple_CheckExact(x1)) return malformed("enum values");
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(x1); i++) {
            if (!scalar(PyTuple_GET_ITEM(x1, i)))
                return malformed("an enum value that is not a string, a boolean or null");
        }
        c->value = x1;
        return 0;
    case OP_LENGTH:
        c->a = PyLong_AsLong(x1);
        c->b = PyLong_AsLong(PyTuple_GET_ITEM(t, 2));
        return PyErr_Occurred() ? -1 : 0;
    case OP_PATTERN: {
        PyObject *table = x1, *accepting = PyTuple_GET_ITEM(t, 2);
        if (!PyBytes_CheckExact(table) || !PyBytes_CheckExact(accepting))
            return malformed("an automaton");
        c->size = PyBytes_GET_SIZE(accepting);
        if (c->size < 1 || PyBytes_GET_SIZE(table) != c->size * 128 * 2)
            return malformed("an automaton's size");
        c->table = (const uint16_t *)PyBytes_AS_STRING(table);
        c->bits = (const unsigned char *)PyBytes_AS_STRING(accepting);
        for (Py_ssize_t i = 0; i < c->size * 128; i++) {
            if (c->table[i] != DEAD && c->table[i] >= c->size)
                return malformed("an automaton names a missing state");
        }
        return 0;
    }
    case OP_SPANS: {
        PyObject *heads = x1, *tail = PyTuple_GET_ITEM(t, 2);
        if (!PyBytes_CheckExact(heads) || !PyBytes_CheckExact(tail) ||
            PyBytes_GET_SIZE(tail) != 16 || PyBytes_GET_SIZE(heads) % 16 != 0)
            return malformed("spans' bitmaps");
        c->bits = (const unsigned char *)PyBytes_AS_STRING(heads);
        c->tail = (const unsigned char *)PyBytes_AS_STRING(tail);
        c->size = PyBytes_GET_SIZE(heads) / 16;
        c->a = PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
        c->b = PyLong_AsLong(PyTuple_GET_ITEM(t, 4));
        return PyErr_Occurred() ? -1 : 0;
    }
    case OP_MINIMUM:
    case OP_MAXIMUM:
        c->bound = PyFloat_AsDouble(x1);
        return PyErr_Occurred() ? -1 : 0;
    case OP_PROPERTIES: {
        PyObject *props = x1, *required = PyTuple_GET_ITEM(t, 2);
        PyObject *extra = PyTuple_GET_ITEM(t, 3), *names = PyTuple_GET_ITEM(t, 4);
        if (!PyDict_CheckExact(props) || !PyTuple_CheckExact(required))
            return malformed("properties");
        c->index = PyDict_New();
        if (c->index == NULL) return -1;
        c->nchildren = PyDict_GET_SIZE(props);
        c->children = PyMem_Calloc(c->nchildren ? c->nchildren : 1, sizeof(Node));
        if (c->children == NULL) {
            c->nchildren = 0;
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t pos = 0, i = 0;
        PyObject *key, *value;
        while (PyDict_Next(props, &pos, &key, &value)) {
            PyObject *at = PyLong_FromSsize_t(i);
            int bad = at == NULL || PyDict_SetItem(c->index, key, at) < 0;
            Py_XDECREF(at);
            if (bad || build(value, &c->children[i], depth + 1) < 0) return -1;
            i++;
        }
        c->is_required = PyMem_Calloc(c->nchildren ? c->nchildren : 1, 1);
        c->seen = PyMem_Calloc(1, sizeof(struct Seen));
        c->unnamed = PyList_New(0);
        if (c->is_required == NULL || c->seen == NULL || c->unnamed == NULL) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t r = 0; r < PyTuple_GET_SIZE(required); r++) {
            PyObject *name = PyTuple_GET_ITEM(required, r);
            PyObject *at = PyDict_GetItemWithError(c->index, name);
            if (at == NULL && PyErr_Occurred()) return -1;
            if (at == NULL) {
                if (PyList_Append(c->unnamed, name) < 0) return -1;
            } else if (!c->is_required[PyLong_AsSsize_t(at)]) {
                c->is_required[PyLong_AsSsize_t(at)] = 1;
                c->nrequired++;
            }
        }
        Py_SETREF(c->unnamed, PyList_AsTuple(c->unnamed));
        if (c->unnamed == NULL) return -1;
        if (extra == Py_False) {
            c->additional = 1;
        } else if (extra != Py_None) {
            c->additional = 2;
            if (build_sub(extra, &c->sub[0], depth) < 0) return -1;
        }
        return build_sub(names, &c->sub[1], depth);
    }
    case OP_IF:
        if (build_sub(x1, &c->sub[0], depth) < 0 ||
            build_sub(PyTuple_GET_ITEM(t, 2), &c->sub[1], depth) < 0 ||
            build_sub(PyTuple_GET_ITEM(t, 3), &c->sub[2], depth) < 0)
            return -1;
        if (c->sub[0] == NULL) return malformed("an if without a condition");
        return 0;
    default: /* OP_NOT */
        if (build_sub(x1, &c->sub[0], depth) < 0) return -1;
        if (c->sub[0] == NULL) return malformed("a not without a schema");
        return 0;
    }
}

static int
build(PyObject *tuple, Node *out, int depth)
{
    if (depth > 100) return malformed("nested too deep");
    if (!PyTuple_CheckExact(tuple)) return malformed("a node is not a tuple");
    out->n = PyTuple_GET_SIZE(tuple);
    out->checks = PyMem_Calloc(out->n ? out->n : 1, sizeof(Check));
    if (out->checks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < out->n; i++) {
        if (build_check(PyTuple_GET_ITEM(tuple, i), &out->checks[i], depth) < 0) return -1;
    }
    return 0;
}

/* --- running them ------------------------------------------------------------------ */

static int run(const Node *node, PyObject *inst);

static int
check_type(long mask, PyObject *inst)
{
    int t = json_type(inst);
    if (t == 0) return UNSURE;
    if (t == T_INTEGER) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(inst, &overflow);
        if (overflow) return UNSURE;
        return (mask & (T_INTEGER | T_NUMBER)) ? VALID : INVALID;
    }
    if (t == T_NUMBER) {
        if (!isfinite(PyFloat_AS_DOUBLE(inst))) return UNSURE;
        if (mask & T_NUMBER) return VALID;
        /* 1.0 is a whole number to JSON Schema: leave that to jsonschema-rs. */
        if (mask & T_INTEGER) return UNSURE;
        return INVALID;
    }
    return (mask & t) ? VALID : INVALID;
}

/* A const or enum value (a string, a boolean or null) against the record's value. */
static int
equal_scalar(PyObject *want, PyObject *inst)
{
    int t = json_type(inst);
    if (t == 0) return UNSURE;
    if (want == Py_None || PyBool_Check(want)) return want == inst ? VALID : INVALID;
    if (t != T_STRING) return INVALID;
    if (want == inst) return VALID;
    int eq = PyUnicode_Compare(want, inst);
    if (eq == -1 && PyErr_Occurred()) return FAILED;
    return eq == 0 ? VALID : INVALID;
}

static int
check_string(const Check *c, PyObject *inst)
{
    int r = plain_string(inst);
    if (r != VALID) return r;
    Py_ssize_t n = PyUnicode_GET_LENGTH(inst);
    int kind = PyUnicode_KIND(inst);
    const void *data = PyUnicode_DATA(inst);
    switch (c->op) {
    case OP_LENGTH:
        return n < c->a || (c->b >= 0 && n > c->b) ? INVALID : VALID;
    case OP_SPANS: {
        Py_ssize_t fixed = c->size;
        if (n < fixed + c->a || (c->b >= 0 && n > fixed + c->b)) return INVALID;
        for (Py_ssize_t i = 0; i < fixed; i++) {
            if (!in_bitmap(c->bits + 16 * i, PyUnicode_READ(kind, data, i))) return INVALID;
        }
        if (kind == PyUnicode_1BYTE_KIND) {
            const Py_UCS1 *s = (const Py_UCS1 *)data;
            int ok = 1;
            for (Py_ssize_t i = fixed; i < n; i++) ok &= in_bitmap(c->tail, s[i]);
            return ok ? VALID : INVALID;
        }
        for (Py_ssize_t i = fixed; i < n; i++) {
            if (!in_bitmap(c->tail, PyUnicode_READ(kind, data, i))) return INVALID;
        }
        return VALID;
    }
    case OP_PATTERN: {
        uint32_t state = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 ch = PyUnicode_READ(kind, data, i);
            /* Every character a pattern can match is ASCII. */
            if (ch >= 128) return INVALID;
            state = c->table[state * 128 + ch];
            if (state == DEAD) return INVALID;
        }
        return c->bits[state] ? VALID : INVALID;
    }
    default: /* OP_FORMAT */
        if (kind != PyUnicode_1BYTE_KIND || !PyUnicode_IS_ASCII(inst)) return UNSURE;
        switch (c->a) {
        case F_DATE_TIME: return date_time((const Py_UCS1 *)data, n);
        case F_URI_REFERENCE: return uri_reference((const Py_UCS1 *)data, n);
        case F_URI: return uri((const Py_UCS1 *)data, n);
        default: return UNSURE;
        }
    }
}

static int
check_bound(const Check *c, PyObject *inst)
{
    double x;
    int t = json_type(inst);
    if (t == T_INTEGER) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(inst, &overflow);
        if (overflow || v > (1LL << 53) || v < -(1LL << 53)) return UNSURE;
        x = (double)v;
    } else if (t == T_NUMBER) {
        x = PyFloat_AS_DOUBLE(inst);
        if (!isfinite(x)) return UNSURE;
    } else {
        return t == 0 ? UNSURE : VALID;
    }
    return (c->op == OP_MINIMUM ? x >= c->bound : x <= c->bound) ? VALID : INVALID;
}

static int
check_properties(const Check *c, PyObject *inst)
{
    if (!PyDict_CheckExact(inst)) return json_type(inst) ? VALID : UNSURE;
    Py_ssize_t n = PyTuple_GET_SIZE(c->unnamed);
    for (Py_ssize_t i = 0; i < n; i++) {
        int has = PyDict_Contains(inst, PyTuple_GET_ITEM(c->unnamed, i));
        if (has < 0) return FAILED;
        if (!has) return INVALID;
    }
    Py_ssize_t pos = 0, required = 0;
    PyObject *key, *value;
    if (c->additional == 0 && c->sub[1] == NULL && c->nchildren < PyDict_GET_SIZE(inst)) {
        /* Only the named properties are constrained (plain_json saw the keys): look
         * those up in the record rather than each of the record's keys in them. */
        while (PyDict_Next(c->index, &pos, &key, &value)) {
            Py_ssize_t child = PyLong_AsSsize_t(value);
            PyObject *found = PyDict_GetItemWithError(inst, key);
            if (found == NULL) {
                if (PyErr_Occurred()) return FAILED;
                if (c->is_required[child]) return INVALID;
                continue;
            }
            int r = run(&c->children[child], found);
            if (r != VALID) return r;
        }
        return VALID;
    }
    while (PyDict_Next(inst, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) return UNSURE;
        int r;
        Py_ssize_t child;
        struct Seen *seen = c->seen;
        size_t slot = seen_slot(key);
        if (seen->key[slot] == key) {
            child = seen->child[slot];
        } else {
            if (c->sub[1] != NULL) {
                r = run(c->sub[1], key);
                if (r != VALID) return r;
            }
            PyObject *at = PyDict_GetItemWithError(c->index, key);
            if (at == NULL && PyErr_Occurred()) return FAILED;
            child = at == NULL ? -1 : PyLong_AsSsize_t(at);
            Py_INCREF(key);
            Py_XSETREF(seen->key[slot], key);
            seen->child[slot] = child;
        }
        if (child >= 0) {
            required += c->is_required[child];
            r = run(&c->children[child], value);
        } else if (c->additional == 1) {
            r = INVALID;
        } else if (c->additional == 2) {
            r = run(c->sub[0], value);
        } else {
            r = VALID; /* any JSON value: plain_json has seen it */
        }
        if (r != VALID) return r;
    }
    /* Keys are distinct: fewer required ones met than there are means one is missing. */
    return required == c->nrequired ? VALID : INVALID;
}

static int
run_check(const Check *c, PyObject *inst)
{
    switch (c->op) {
    case OP_TYPE: return check_type(c->a, inst);
    case OP_CONST: return equal_scalar(c->value, inst);
    case OP_ENUM: {
        Py_ssize_t n = PyTuple_GET_SIZE(c->value);
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = equal_scalar(PyTuple_GET_ITEM(c->value, i), inst);
            if (r != INVALID) return r;
        }
        return INVALID;
    }
    case OP_LENGTH:
    case OP_PATTERN:
    case OP_FORMAT:
    case OP_SPANS:
        return PyUnicode_CheckExact(inst) ? check_string(c, inst) : VALID;
    case OP_MINIMUM:
    case OP_MAXIMUM:
        return check_bound(c, inst);
    case OP_PROPERTIES: return check_properties(c, inst);
    case OP_IF: {
        int r = run(c->sub[0], inst);
        if (r == VALID) return c->sub[1] == NULL ? VALID : run(c->sub[1], inst);
        if (r == INVALID) return c->sub[2] == NULL ? VALID : run(c->sub[2], inst);
        return r;
    }
    default: { /* OP_NOT */
        int r = run(c->sub[0], inst);
        return r == VALID ? INVALID : r == INVALID ? VALID : r;
    }
    }
}

static int
run(const Node *node, PyObject *inst)
{
    for (Py_ssize_t i = 0; i < node->n; i++) {
        int r = run_check(&node->checks[i], inst);
        if (r != VALID) return r;
    }
    return VALID;
}

/* --- the module -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Node root;
    PyObject *source; /* the tuples: the bytes and names the structures point into */
} Program;

static void
program_dealloc(Program *self)
{
    free_node(&self->root);
    Py_XDECREF(self->source);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
program_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *source;
    static char *kwlist[] = {"program", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:Program", kwlist, &PyTuple_Type, &source))
        return NULL;
    Program *self = (Program *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    Py_INCREF(source);
    self->source = source;
    if (build(source, &self->root, 0) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
run_record(Program *self, PyObject *record)
{
    int r = plain_json(record, 0);
    return r == VALID ? run(&self->root, record) : r;
}

static PyObject *
program_evaluate(Program *self, PyObject *record)
{
    int r = run_record(self, record);
    return r == FAILED ? NULL : PyLong_FromLong(r);
}

static PyObject *
program_accepts(Program *self, PyObject *record)
{
    int r = run_record(self, record);
    if (r == FAILED) return NULL;
    return PyBool_FromLong(r == VALID);
}

static PyMethodDef program_methods[] = {
    {"accepts", (PyCFunction)program_accepts, METH_O,
     "accepts(record) -> True only when the program is sure the record is valid."},
    {"evaluate", (PyCFunction)program_evaluate, METH_O,
     "evaluate(record) -> 0 invalid, 1 valid, 2 unsure."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._schema_check.Program",
    .tp_basicsize = sizeof(Program),
    .tp_dealloc = (destructor)program_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A schema program (streams/schema_program.py) read into C structures once.",
    .tp_methods = program_methods,
    .tp_new = program_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_schema_check",
    "Runs the programs of streams/schema_program.py on decoded records.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__schema_check(void)
{
    if (PyType_Ready(&ProgramType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ProgramType);
    if (PyModule_AddObject(m, "Program", (PyObject *)&ProgramType) < 0) {
        Py_DECREF(&ProgramType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
