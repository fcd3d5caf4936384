/* The identities a district's stream has applied, as a flat table: streams/identities.py.
 *
 * A 64-bit identity and the UTC day it was last applied on, 12 bytes an entry in two
 * arrays with open addressing, where a Python dict of int objects spent about 100 (the
 * int, the dict's slot, the day's list). The reference and the fallback without a
 * compiler is streams/identities.py `PyIdentityMemory`; both keep the same contract and
 * tests/unit/test_identities.py holds each of them to a plain dict.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 8

typedef struct {
    PyObject_HEAD
    uint64_t *keys; /* 0 marks an empty slot: identity 0 means "no identity" */
    int32_t *days;
    Py_ssize_t capacity; /* 0, or MIN_CAPACITY or more: any size, see capacity_for */
    Py_ssize_t used;
    int32_t oldest; /* no day held is older: an expiry before it has nothing to do */
} Memory;

static inline Py_ssize_t
slot_of(uint64_t key, Py_ssize_t capacity)
{
    /* The mixed key scaled to [0, capacity) by its high bits ("fastrange"): any capacity
     * works, not only powers of two, so a table can grow by half rather than double. */
    uint64_t mixed = key * 0x9E3779B97F4A7C15ULL;
    return (Py_ssize_t)(((unsigned __int128)mixed * (uint64_t)capacity) >> 64);
}

static inline Py_ssize_t
next_slot(Py_ssize_t i, Py_ssize_t capacity)
{
    return i + 1 == capacity ? 0 : i + 1;
}

static Py_ssize_t
find(const Memory *m, uint64_t key)
{
    if (m->capacity == 0) {
        return -1;
    }
    for (Py_ssize_t i = slot_of(key, m->capacity);; i = next_slot(i, m->capacity)) {
        if (m->keys[i] == key) {
            return i;
        }
        if (m->keys[i] == 0) {
            return -1;
        }
    }
}

static void
put(uint64_t *keys, int32_t *days, Py_ssize_t capacity, uint64_t key, int32_t day)
{
    Py_ssize_t i = slot_of(key, capacity);
    while (keys[i] != 0 && keys[i] != key) {
        i = next_slot(i, capacity);
    }
    keys[i] = key;
    days[i] = day;
}

/* Moves every entry with a day at or after `first_day` into tables of `capacity` slots
 * (0: none at all); a memory error leaves the memory as it was. */
static int
rebuild(Memory *m, Py_ssize_t capacity, long long first_day)
{
    uint64_t *keys = NULL;
    int32_t *days = NULL;
    if (capacity > 0) {
        keys = PyMem_Calloc((size_t)capacity, sizeof(uint64_t));
        days = PyMem_Malloc((size_t)capacity * sizeof(int32_t));
        if (keys == NULL || days == NULL) {
            PyMem_Free(keys);
            PyMem_Free(days);
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t used = 0;
    int32_t oldest = INT32_MAX;
    for (Py_ssize_t i = 0; i < m->capacity; i++) {
        if (m->keys[i] != 0 && (long long)m->days[i] >= first_day) {
            put(keys, days, capacity, m->keys[i], m->days[i]);
            used++;
            if (m->days[i] < oldest) {
                oldest = m->days[i];
            }
        }
    }
    PyMem_Free(m->keys);
    PyMem_Free(m->days);
    m->keys = keys;
    m->days = days;
    m->capacity = capacity;
    m->used = used;
    m->oldest = oldest;
    return 0;
}

static Py_ssize_t
capacity_for(Py_ssize_t n)
{
    /* Half full once n are in; add_one grows the table at three quarters, so it is
     * between a half and three quarters full. Doubling a power of two left it between
     * three eighths and three quarters: 27.5 bytes an identity in a catch-up at 1,000
     * districts instead of the 12 of an entry (docs/performance.md, twenty-eighth step). */
    Py_ssize_t capacity = 2 * n;
    return capacity < MIN_CAPACITY ? MIN_CAPACITY : capacity;
}

static int
read_identity(PyObject *obj, uint64_t *key)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "an identity is an int, not %.80s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long value = PyLong_AsUnsignedLongLong(obj);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_SetString(PyExc_OverflowError, "an identity is a number from 1 to 2**64 - 1.");
        return -1;
    }
    if (value == 0) {
        PyErr_SetString(PyExc_ValueError, "identity 0 means \"no identity\" and is never kept.");
        return -1;
    }
    *key = (uint64_t)value;
    return 0;
}

static int
read_day(PyObject *obj, int32_t *day)
{
    long long value = PyLong_AsLongLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT32_MIN || value > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a day is a 32-bit number of days since 1970.");
        return -1;
    }
    *day = (int32_t)value;
    return 0;
}

static int
add_one(Memory *m, uint64_t key, int32_t day)
{
    if ((m->used + 1) * 4 > m->capacity * 3) {
        if (rebuild(m, capacity_for(m->used + 1), LLONG_MIN) < 0) {
            return -1;
        }
    }
    Py_ssize_t before = m->used;
    Py_ssize_t i = find(m, key);
    if (i < 0) {
        put(m->keys, m->days, m->capacity, key, day);
        m->used = before + 1;
    }
    else {
        m->days[i] = day;
    }
    if (day < m->oldest) {
        m->oldest = day;
    }
    return 0;
}

static PyObject *
Memory_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if ((args != NULL && PyTuple_GET_SIZE(args) > 0) || (kwds != NULL && PyDict_GET_SIZE(kwds) > 0)) {
        PyErr_SetString(PyExc_TypeError, "IdentityMemory() takes no arguments.");
        return NULL;
    }
    Memory *m = (Memory *)type->tp_alloc(type, 0);
    if (m != NULL) {
        m->oldest = INT32_MAX;
    }
    return (PyObject *)m;
}

static void
Memory_dealloc(Memory *m)
{
    PyMem_Free(m->keys);
    PyMem_Free(m->days);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static PyObject *
Memory_add(Memory *m, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t key;
    int32_t day;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(identity, day) takes 2 arguments.");
        return NULL;
    }
    if (read_identity(args[0], &key) < 0 || read_day(args[1], &day) < 0 || add_one(m, key, day) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Memory_add_day(Memory *m, PyObject *const *args, Py_ssize_t nargs)
{
    int32_t day;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add_day(day, identities) takes 2 arguments.");
        return NULL;
    }
    if (read_day(args[0], &day) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[1], "add_day's identities are a sequence.");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t j = 0; j < n; j++) {
        uint64_t key;
        if (read_identity(items[j], &key) < 0 || add_one(m, key, day) < 0) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *
Memory_seen(Memory *m, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t key;
    long long first_day;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seen(identity, first_day) takes 2 arguments.");
        return NULL;
    }
    if (read_identity(args[0], &key) < 0) {
        return NULL;
    }
    first_day = PyLong_AsLongLong(args[1]);
    if (first_day == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t i = find(m, key);
    if (i >= 0 && (long long)m->days[i] >= first_day) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *
Memory_day_of(Memory *m, PyObject *arg)
{
    uint64_t key;
    if (read_identity(arg, &key) < 0) {
        return NULL;
    }
    Py_ssize_t i = find(m, key);
    if (i < 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(m->days[i]);
}

static PyObject *
Memory_expire(Memory *m, PyObject *arg)
{
    long long first_day = PyLong_AsLongLong(arg);
    if (first_day == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (m->used == 0 || (long long)m->oldest >= first_day) {
        return PyLong_FromLong(0);
    }
    Py_ssize_t kept = 0;
    int32_t oldest = INT32_MAX;
    for (Py_ssize_t i = 0; i < m->capacity; i++) {
        if (m->keys[i] != 0 && (long long)m->days[i] >= first_day) {
            kept++;
            if (m->days[i] < oldest) {
                oldest = m->days[i];
            }
        }
    }
    Py_ssize_t before = m->used;
    if (kept == before) {
        /* The oldest day was overwritten by a later one: nothing to drop, only to learn. */
        m->oldest = oldest;
        return PyLong_FromLong(0);
    }
    if (rebuild(m, kept ? capacity_for(kept) : 0, first_day) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(before - m->used);
}

typedef struct {
    int32_t day;
    uint64_t key;
} Entry;

static int
entry_order(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    if (x->day != y->day) {
        return x->day < y->day ? -1 : 1;
    }
    return x->key < y->key ? -1 : (x->key > y->key);
}

static PyObject *
Memory_by_day(Memory *m, PyObject *Py_UNUSED(ignored))
{
    Entry *entries = PyMem_Malloc((size_t)(m->used ? m->used : 1) * sizeof(Entry));
    if (entries == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < m->capacity; i++) {
        if (m->keys[i] != 0) {
            entries[n].day = m->days[i];
            entries[n].key = m->keys[i];
            n++;
        }
    }
    qsort(entries, (size_t)n, sizeof(Entry), entry_order);
    PyObject *out = PyList_New(0);
    PyObject *ids = NULL;
    for (Py_ssize_t j = 0; out != NULL && j < n; j++) {
        if (j == 0 || entries[j].day != entries[j - 1].day) {
            ids = PyList_New(0);
            PyObject *day = PyLong_FromLong(entries[j].day);
            PyObject *pair = (ids && day) ? PyList_New(2) : NULL;
            if (pair == NULL) {
                Py_XDECREF(ids);
                Py_XDECREF(day);
                Py_CLEAR(out);
                break;
            }
            PyList_SET_ITEM(pair, 0, day);
            PyList_SET_ITEM(pair, 1, ids); /* the pair owns the list; `ids` stays borrowed */
            int failed = PyList_Append(out, pair);
            Py_DECREF(pair);
            if (failed) {
                Py_CLEAR(out);
                break;
            }
        }
        PyObject *key = PyLong_FromUnsignedLongLong(entries[j].key);
        if (key == NULL || PyList_Append(ids, key) < 0) {
            Py_XDECREF(key);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(key);
    }
    PyMem_Free(entries);
    return out;
}

static Py_ssize_t
Memory_len(Memory *m)
{
    return m->used;
}

static PyObject *
Memory_sizeof(Memory *m, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(Memory) +
                              m->capacity * (Py_ssize_t)(sizeof(uint64_t) + sizeof(int32_t)));
}

static PyMethodDef Memory_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Memory_add, METH_FASTCALL,
     "add(identity, day): the identity was applied on that UTC day (its latest)."},
    {"add_day", (PyCFunction)(void (*)(void))Memory_add_day, METH_FASTCALL,
     "add_day(day, identities): add(identity, day) for each of them."},
    {"seen", (PyCFunction)(void (*)(void))Memory_seen, METH_FASTCALL,
     "seen(identity, first_day): kept, and applied on first_day or later."},
    {"day_of", (PyCFunction)Memory_day_of, METH_O,
     "day_of(identity): the day it was last applied on, None if not kept."},
    {"expire", (PyCFunction)Memory_expire, METH_O,
     "expire(first_day): forget the identities of days before it; how many were."},
    {"by_day", (PyCFunction)Memory_by_day, METH_NOARGS,
     "by_day(): [[day, [identity, ...]], ...], days and identities ascending."},
    {"__sizeof__", (PyCFunction)Memory_sizeof, METH_NOARGS, "Bytes held, tables included."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Memory_as_sequence = {
    .sq_length = (lenfunc)Memory_len,
};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._identities.IdentityMemory",
    .tp_doc = "The identities a stream applied, each with the UTC day it was last applied on.",
    .tp_basicsize = sizeof(Memory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Memory_new,
    .tp_dealloc = (destructor)Memory_dealloc,
    .tp_methods = Memory_methods,
    .tp_as_sequence = &Memory_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streams._identities",
    .m_doc = "The identities a stream applied, in a flat table (streams/identities.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__identities(void)
{
    if (PyType_Ready(&MemoryType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "IdentityMemory", (PyObject *)&MemoryType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
