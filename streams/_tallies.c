/* Counts per (bucket, measure) in a flat table: streams/tallies.py.
 *
 * A district's 5-minute slots and hours held a list of 18 ints per bucket in a dict, of
 * which one to four were not zero: 154 to 269 bytes a bucket, and three dependent loads
 * (the dict's slot, the list, the int) per count added. Here each count that was ever
 * added is one 16-byte entry, keyed by bucket * 32 + measure, in an open-addressing
 * table. A count stays a C integer until it would leave 64 bits; then it is a Python int
 * in a side dict (the direct loss in yuan has no bound), so every sum is exact. The
 * reference, and the fallback without a compiler, is streams/tallies.py `PyTally`;
 * tests/unit/test_tallies.py holds both to a plain dict.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 8
#define MEASURE_BITS 5
#define MAX_WIDTH (1 << MEASURE_BITS)
/* Buckets are slot or hour numbers of event times the schemas bound to years 1-9999. */
#define BUCKET_LIMIT ((int64_t)1 << 56)
#define EMPTY INT64_MIN
/* The count is a Python int in `big`, under the entry's key. */
#define BIG INT64_MIN

typedef struct {
    int64_t key;
    int64_t count;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *table;
    Py_ssize_t capacity; /* 0, or MIN_CAPACITY or more: any size, see capacity_for */
    Py_ssize_t used;
    int width;           /* measures per bucket */
    PyObject *big;       /* NULL or a dict: key -> int, for the counts beyond 64 bits */
} Tally;

static inline Py_ssize_t
slot_of(int64_t key, Py_ssize_t capacity)
{
    /* The mixed key scaled to [0, capacity) by its high bits ("fastrange"): any capacity
     * works, not only powers of two, so a table can grow by half rather than double. */
    uint64_t mixed = (uint64_t)key * 0x9E3779B97F4A7C15ULL;
    return (Py_ssize_t)(((unsigned __int128)mixed * (uint64_t)capacity) >> 64);
}

static inline Py_ssize_t
next_slot(Py_ssize_t i, Py_ssize_t capacity)
{
    return i + 1 == capacity ? 0 : i + 1;
}

static Py_ssize_t
find(const Tally *t, int64_t key)
{
    if (t->capacity == 0) {
        return -1;
    }
    for (Py_ssize_t i = slot_of(key, t->capacity);; i = next_slot(i, t->capacity)) {
        if (t->table[i].key == key) {
            return i;
        }
        if (t->table[i].key == EMPTY) {
            return -1;
        }
    }
}

static Py_ssize_t
capacity_for(Py_ssize_t n)
{
    /* Half full once n are in; entry_for grows the table at three quarters, so it is
     * between a half and three quarters full, not between three eighths and three
     * quarters as a power of two doubled was (docs/performance.md, twenty-eighth step). */
    Py_ssize_t capacity = 2 * n;
    return capacity < MIN_CAPACITY ? MIN_CAPACITY : capacity;
}

/* Moves every entry with a bucket at or after `first` into a table of `capacity` slots
 * (0: none at all); a memory error leaves the tally as it was. */
static int
rebuild(Tally *t, Py_ssize_t capacity, int64_t first)
{
    Entry *table = NULL;
    if (capacity > 0) {
        table = PyMem_Malloc((size_t)capacity * sizeof(Entry));
        if (table == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < capacity; i++) {
            table[i].key = EMPTY;
        }
    }
    Py_ssize_t used = 0;
    int64_t lowest = first == INT64_MIN ? INT64_MIN : first * MAX_WIDTH;
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        Entry e = t->table[i];
        if (e.key != EMPTY && e.key >= lowest) {
            Py_ssize_t j = slot_of(e.key, capacity);
            while (table[j].key != EMPTY) {
                j = next_slot(j, capacity);
            }
            table[j] = e;
            used++;
        }
    }
    PyMem_Free(t->table);
    t->table = table;
    t->capacity = capacity;
    t->used = used;
    return 0;
}

static int
read_bucket(PyObject *obj, int64_t *bucket)
{
    long long value = PyLong_AsLongLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value <= -BUCKET_LIMIT || value >= BUCKET_LIMIT) {
        PyErr_SetString(PyExc_OverflowError, "a bucket is a number of slots or hours within 2**56 of 1970.");
        return -1;
    }
    *bucket = (int64_t)value;
    return 0;
}

static int
read_measure(const Tally *t, PyObject *obj, int *measure)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value >= t->width) {
        PyErr_Format(PyExc_ValueError, "a measure is a number from 0 to %d.", t->width - 1);
        return -1;
    }
    *measure = (int)value;
    return 0;
}

/* The count of entry i as a new reference. */
static PyObject *
count_of(const Tally *t, Py_ssize_t i)
{
    if (t->table[i].count != BIG) {
        return PyLong_FromLongLong(t->table[i].count);
    }
    PyObject *key = PyLong_FromLongLong(t->table[i].key);
    if (key == NULL) {
        return NULL;
    }
    PyObject *value = PyDict_GetItemWithError(t->big, key);
    Py_DECREF(key);
    if (value == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "a tally lost a count beyond 64 bits.");
    }
    Py_XINCREF(value);
    return value;
}

/* Adds n (a Python int) to the count of entry i, which then holds it beyond 64 bits. */
static int
add_big(Tally *t, Py_ssize_t i, PyObject *n)
{
    if (t->big == NULL) {
        t->big = PyDict_New();
        if (t->big == NULL) {
            return -1;
        }
    }
    PyObject *old = count_of(t, i);
    if (old == NULL) {
        return -1;
    }
    PyObject *sum = PyNumber_Add(old, n);
    Py_DECREF(old);
    PyObject *key = PyLong_FromLongLong(t->table[i].key);
    int failed = sum == NULL || key == NULL || PyDict_SetItem(t->big, key, sum) < 0;
    Py_XDECREF(sum);
    Py_XDECREF(key);
    if (failed) {
        return -1;
    }
    t->table[i].count = BIG;
    return 0;
}

/* The entry of `key`, added with a count of 0 if it is not there; -1 on a memory error. */
static Py_ssize_t
entry_for(Tally *t, int64_t key)
{
    Py_ssize_t i = find(t, key);
    if (i >= 0) {
        return i;
    }
    if ((t->used + 1) * 4 > t->capacity * 3) {
        if (rebuild(t, capacity_for(t->used + 1), INT64_MIN) < 0) {
            return -1;
        }
    }
    i = slot_of(key, t->capacity);
    while (t->table[i].key != EMPTY) {
        i = next_slot(i, t->capacity);
    }
    t->table[i].key = key;
    t->table[i].count = 0;
    t->used++;
    return i;
}

static int
add_count(Tally *t, int64_t bucket, int measure, PyObject *n)
{
    if (!PyLong_Check(n)) {
        PyErr_Format(PyExc_TypeError, "a count is an int, not %.80s", Py_TYPE(n)->tp_name);
        return -1;
    }
    Py_ssize_t i = entry_for(t, bucket * MAX_WIDTH + measure);
    if (i < 0) {
        return -1;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(n, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    int64_t sum;
    if (overflow || t->table[i].count == BIG || value == INT64_MIN ||
        __builtin_add_overflow(t->table[i].count, (int64_t)value, &sum) || sum == BIG) {
        return add_big(t, i, n);
    }
    t->table[i].count = sum;
    return 0;
}

static PyObject *
Tally_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"width", NULL};
    int width;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i:Tally", names, &width)) {
        return NULL;
    }
    if (width < 1 || width > MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "a tally holds from 1 to %d measures a bucket.", MAX_WIDTH);
        return NULL;
    }
    Tally *t = (Tally *)type->tp_alloc(type, 0);
    if (t != NULL) {
        t->width = width;
    }
    return (PyObject *)t;
}

static void
Tally_dealloc(Tally *t)
{
    PyMem_Free(t->table);
    Py_XDECREF(t->big);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *
Tally_add(Tally *t, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t bucket;
    int measure;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add(bucket, measure, n) takes 3 arguments.");
        return NULL;
    }
    if (read_bucket(args[0], &bucket) < 0 || read_measure(t, args[1], &measure) < 0 ||
        add_count(t, bucket, measure, args[2]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
read_list(PyObject *out, const Tally *t)
{
    if (!PyList_CheckExact(out) || PyList_GET_SIZE(out) < t->width) {
        PyErr_Format(PyExc_TypeError, "sum_into adds into a list of at least %d ints.", t->width);
        return -1;
    }
    return 0;
}

/* out[m] += value */
static int
add_into(PyObject *out, int m, PyObject *value)
{
    PyObject *sum = PyNumber_Add(PyList_GET_ITEM(out, m), value);
    if (sum == NULL) {
        return -1;
    }
    Py_SETREF(PyList_GET_ITEM(out, m), sum);
    return 0;
}

static int
flush(PyObject *out, int m, int64_t value)
{
    PyObject *n = PyLong_FromLongLong(value);
    if (n == NULL) {
        return -1;
    }
    int failed = add_into(out, m, n);
    Py_DECREF(n);
    return failed;
}

static PyObject *
Tally_sum_into(Tally *t, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t lo, hi;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sum_into(out, lo, hi) takes 3 arguments.");
        return NULL;
    }
    PyObject *out = args[0];
    if (read_list(out, t) < 0 || read_bucket(args[1], &lo) < 0 || read_bucket(args[2], &hi) < 0) {
        return NULL;
    }
    if (hi <= lo || t->used == 0) {
        Py_RETURN_NONE;
    }
    int64_t acc[MAX_WIDTH] = {0};
    int64_t first = lo * MAX_WIDTH, stop = hi * MAX_WIDTH;
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        Entry e = t->table[i];
        if (e.key == EMPTY || e.key < first || e.key >= stop) {
            continue;
        }
        int m = (int)(e.key & (MAX_WIDTH - 1));
        if (e.count == BIG) {
            PyObject *value = count_of(t, i);
            int failed = value == NULL || add_into(out, m, value) < 0;
            Py_XDECREF(value);
            if (failed) {
                return NULL;
            }
        }
        else {
            int64_t before = acc[m];
            if (__builtin_add_overflow(before, e.count, &acc[m])) {
                /* The sum so far goes into the list as a Python int; this count starts anew. */
                if (flush(out, m, before) < 0) {
                    return NULL;
                }
                acc[m] = e.count;
            }
        }
    }
    for (int m = 0; m < t->width; m++) {
        if (acc[m] != 0 && flush(out, m, acc[m]) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Tally_drop_below(Tally *t, PyObject *arg)
{
    int64_t first;
    if (read_bucket(arg, &first) < 0) {
        return NULL;
    }
    int64_t lowest = first * MAX_WIDTH;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        if (t->table[i].key != EMPTY && t->table[i].key >= lowest) {
            kept++;
        }
    }
    if (kept == t->used) {
        Py_RETURN_NONE;
    }
    if (t->big != NULL) {
        /* Drop the side dict's counts of the entries that go. */
        for (Py_ssize_t i = 0; i < t->capacity; i++) {
            if (t->table[i].key != EMPTY && t->table[i].key < lowest && t->table[i].count == BIG) {
                PyObject *key = PyLong_FromLongLong(t->table[i].key);
                int failed = key == NULL || PyDict_DelItem(t->big, key) < 0;
                Py_XDECREF(key);
                if (failed) {
                    return NULL;
                }
            }
        }
    }
    if (rebuild(t, kept ? capacity_for(kept) : 0, first) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
key_order(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    return x->key < y->key ? -1 : (x->key > y->key);
}

/* The entries in ascending key order (so by bucket, then measure); a count beyond 64 bits
 * stays BIG, found again by its key. NULL on a memory error. */
static Entry *
sorted_entries(const Tally *t)
{
    Entry *entries = PyMem_Malloc((size_t)(t->used ? t->used : 1) * sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        if (t->table[i].key != EMPTY) {
            entries[n++] = t->table[i];
        }
    }
    qsort(entries, (size_t)n, sizeof(Entry), key_order);
    return entries;
}

static inline int64_t
bucket_of(int64_t key)
{
    /* Floor division: buckets before 1970 are negative. */
    return key >= 0 ? key / MAX_WIDTH : -((-key + MAX_WIDTH - 1) / MAX_WIDTH);
}

/* A list of `width` zeros, the counts of a bucket. */
static PyObject *
zero_row(const Tally *t)
{
    PyObject *row = PyList_New(t->width);
    if (row == NULL) {
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    for (int m = 0; m < t->width; m++) {
        Py_INCREF(zero);
        PyList_SET_ITEM(row, m, zero);
    }
    Py_DECREF(zero);
    return row;
}

static int
set_count(const Tally *t, PyObject *row, int64_t key, int64_t count)
{
    PyObject *value;
    if (count == BIG) {
        Py_ssize_t i = find(t, key);
        value = i < 0 ? NULL : count_of(t, i);
        if (i < 0) {
            PyErr_SetString(PyExc_SystemError, "a tally lost an entry.");
        }
    }
    else {
        value = PyLong_FromLongLong(count);
    }
    if (value == NULL) {
        return -1;
    }
    Py_SETREF(PyList_GET_ITEM(row, key & (MAX_WIDTH - 1)), value);
    return 0;
}

static PyObject *
Tally_row(Tally *t, PyObject *arg)
{
    int64_t bucket;
    if (read_bucket(arg, &bucket) < 0) {
        return NULL;
    }
    PyObject *row = NULL;
    for (int m = 0; m < t->width; m++) {
        Py_ssize_t i = find(t, bucket * MAX_WIDTH + m);
        if (i < 0) {
            continue;
        }
        if (row == NULL && (row = zero_row(t)) == NULL) {
            return NULL;
        }
        if (set_count(t, row, t->table[i].key, t->table[i].count) < 0) {
            Py_DECREF(row);
            return NULL;
        }
    }
    if (row == NULL) {
        Py_RETURN_NONE;
    }
    return row;
}

static PyObject *
Tally_rows(Tally *t, PyObject *Py_UNUSED(ignored))
{
    Entry *entries = sorted_entries(t);
    if (entries == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    PyObject *row = NULL; /* borrowed from `out` */
    for (Py_ssize_t j = 0; out != NULL && j < t->used; j++) {
        int64_t bucket = bucket_of(entries[j].key);
        if (j == 0 || bucket != bucket_of(entries[j - 1].key)) {
            PyObject *key = PyLong_FromLongLong(bucket);
            row = key ? zero_row(t) : NULL;
            PyObject *pair = row ? PyList_New(2) : NULL;
            if (pair == NULL) {
                Py_XDECREF(key);
                Py_XDECREF(row);
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(pair, 0, key);
            PyList_SET_ITEM(pair, 1, row);
            int failed = PyList_Append(out, pair);
            Py_DECREF(pair);
            if (failed) {
                Py_CLEAR(out);
                break;
            }
        }
        if (set_count(t, row, entries[j].key, entries[j].count) < 0) {
            Py_CLEAR(out);
        }
    }
    PyMem_Free(entries);
    return out;
}

static PyObject *
Tally_buckets(Tally *t, PyObject *Py_UNUSED(ignored))
{
    Entry *entries = sorted_entries(t);
    if (entries == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    for (Py_ssize_t j = 0; out != NULL && j < t->used; j++) {
        int64_t bucket = bucket_of(entries[j].key);
        if (j > 0 && bucket == bucket_of(entries[j - 1].key)) {
            continue;
        }
        PyObject *key = PyLong_FromLongLong(bucket);
        if (key == NULL || PyList_Append(out, key) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(key);
    }
    PyMem_Free(entries);
    return out;
}

static PyObject *
Tally_load(Tally *t, PyObject *arg)
{
    PyObject *rows = PySequence_Fast(arg, "load takes a sequence of [bucket, counts] rows.");
    if (rows == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(rows);
    PyObject **items = PySequence_Fast_ITEMS(rows);
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *pair = items[j];
        int64_t bucket;
        if (!PyList_Check(pair) && !PyTuple_Check(pair)) {
            PyErr_SetString(PyExc_TypeError, "a row is [bucket, counts].");
            goto fail;
        }
        PyObject *row = PySequence_Fast(pair, "a row is [bucket, counts].");
        if (row == NULL) {
            goto fail;
        }
        if (PySequence_Fast_GET_SIZE(row) != 2 || read_bucket(PySequence_Fast_GET_ITEM(row, 0), &bucket) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "a row is [bucket, counts].");
            }
            Py_DECREF(row);
            goto fail;
        }
        PyObject *counts = PySequence_Fast(PySequence_Fast_GET_ITEM(row, 1), "a row's counts are a list.");
        Py_DECREF(row);
        if (counts == NULL) {
            goto fail;
        }
        Py_ssize_t width = PySequence_Fast_GET_SIZE(counts);
        if (width > t->width) {
            PyErr_Format(PyExc_ValueError, "a row holds at most %d counts.", t->width);
            Py_DECREF(counts);
            goto fail;
        }
        for (Py_ssize_t m = 0; m < width; m++) {
            /* Checked before any is added, so a bad row adds nothing. */
            PyObject *c = PySequence_Fast_GET_ITEM(counts, m);
            if (!PyLong_Check(c)) {
                PyErr_Format(PyExc_TypeError, "a count is an int, not %.80s", Py_TYPE(c)->tp_name);
                Py_DECREF(counts);
                goto fail;
            }
        }
        int any = 0;
        for (Py_ssize_t m = 0; m < width; m++) {
            PyObject *c = PySequence_Fast_GET_ITEM(counts, m);
            int overflow;
            int zero = PyLong_AsLongLongAndOverflow(c, &overflow) == 0 && !overflow;
            if (!zero && add_count(t, bucket, (int)m, c) < 0) {
                Py_DECREF(counts);
                goto fail;
            }
            any |= !zero;
        }
        Py_DECREF(counts);
        /* A bucket of zeros is held as one (as a dict of lists holds it). */
        if (!any && entry_for(t, bucket * MAX_WIDTH) < 0) {
            goto fail;
        }
    }
    Py_DECREF(rows);
    Py_RETURN_NONE;
fail:
    Py_DECREF(rows);
    return NULL;
}

static Py_ssize_t
Tally_len(Tally *t)
{
    /* The buckets held, counted from their list: it serves tests and the census, not the
     * hot path. */
    PyObject *buckets = Tally_buckets(t, NULL);
    if (buckets == NULL) {
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(buckets);
    Py_DECREF(buckets);
    return n;
}

static PyObject *
Tally_sizeof(Tally *t, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t size = (Py_ssize_t)sizeof(Tally) + t->capacity * (Py_ssize_t)sizeof(Entry);
    if (t->big != NULL) {
        PyObject *big = PyObject_CallMethod(t->big, "__sizeof__", NULL);
        if (big == NULL) {
            return NULL;
        }
        /* and the key and the count of each, two ints of about 32 bytes */
        size += PyLong_AsSsize_t(big) + (Py_ssize_t)PyDict_GET_SIZE(t->big) * 64;
        Py_DECREF(big);
    }
    return PyLong_FromSsize_t(size);
}

static PyMethodDef Tally_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Tally_add, METH_FASTCALL,
     "add(bucket, measure, n): count n more of the measure in the bucket."},
    {"sum_into", (PyCFunction)(void (*)(void))Tally_sum_into, METH_FASTCALL,
     "sum_into(out, lo, hi): out[measure] += the counts of buckets lo <= bucket < hi."},
    {"drop_below", (PyCFunction)Tally_drop_below, METH_O,
     "drop_below(first): forget the buckets before it."},
    {"row", (PyCFunction)Tally_row, METH_O,
     "row(bucket): the bucket's counts by measure, None if it holds none."},
    {"rows", (PyCFunction)Tally_rows, METH_NOARGS,
     "rows(): [[bucket, counts], ...], buckets ascending."},
    {"buckets", (PyCFunction)Tally_buckets, METH_NOARGS, "buckets(): the buckets held, ascending."},
    {"load", (PyCFunction)Tally_load, METH_O,
     "load(rows): add the counts of [[bucket, counts], ...] rows (a snapshot's)."},
    {"__sizeof__", (PyCFunction)Tally_sizeof, METH_NOARGS, "Bytes held, the table included."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Tally_as_sequence = {
    .sq_length = (lenfunc)Tally_len,
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._tallies.Tally",
    .tp_doc = "Tally(width): counts per (bucket, measure) in a flat table.",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Tally_new,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_methods = Tally_methods,
    .tp_as_sequence = &Tally_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streams._tallies",
    .m_doc = "Counts per (bucket, measure) in a flat table (streams/tallies.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__tallies(void)
{
    if (PyType_Ready(&TallyType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
