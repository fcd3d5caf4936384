/* A district's open hazards by rectification deadline, as a flat binary heap:
 * streams/deadlines.py.
 *
 * Each entry is (deadline, round, id): 24 bytes in one array, where heapq's list of
 * tuples took about 100 (the tuple, the float, the list's slot). The heap holds a
 * reference to each id (a str: no cycles, so nothing for the collector). The reference,
 * and the fallback without a compiler, is streams/deadlines.py `PyDeadlineHeap`;
 * tests/unit/test_deadlines.py holds both to heapq.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    double deadline;
    int64_t round;
    PyObject *sid;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t size;
    Py_ssize_t capacity;
} Heap;

/* The order of heapq's tuples: deadline, then round, then id. -1 on an error. */
static int
less(const Entry *a, const Entry *b, int *result)
{
    if (a->deadline != b->deadline) {
        *result = a->deadline < b->deadline;
        return 0;
    }
    if (a->round != b->round) {
        *result = a->round < b->round;
        return 0;
    }
    int lt = PyObject_RichCompareBool(a->sid, b->sid, Py_LT);
    if (lt < 0) {
        return -1;
    }
    *result = lt;
    return 0;
}

static int
sift_up(Heap *h, Py_ssize_t i)
{
    Entry item = h->entries[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) >> 1;
        int lt;
        if (less(&item, &h->entries[parent], &lt) < 0) {
            h->entries[i] = item;
            return -1;
        }
        if (!lt) {
            break;
        }
        h->entries[i] = h->entries[parent];
        i = parent;
    }
    h->entries[i] = item;
    return 0;
}

static int
sift_down(Heap *h, Py_ssize_t i)
{
    Entry item = h->entries[i];
    Py_ssize_t n = h->size;
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        int lt;
        if (child + 1 < n) {
            if (less(&h->entries[child + 1], &h->entries[child], &lt) < 0) {
                h->entries[i] = item;
                return -1;
            }
            if (lt) {
                child++;
            }
        }
        if (less(&h->entries[child], &item, &lt) < 0) {
            h->entries[i] = item;
            return -1;
        }
        if (!lt) {
            break;
        }
        h->entries[i] = h->entries[child];
        i = child;
    }
    h->entries[i] = item;
    return 0;
}

static int
reserve(Heap *h, Py_ssize_t n)
{
    if (n <= h->capacity) {
        return 0;
    }
    /* By a quarter, not double: a district's heap lives for the worker's lifetime, and
     * doubled arrays were 39 bytes an entry of 24 in a catch-up at 1,000 districts
     * (docs/performance.md, twenty-eighth step). Reallocation copies little either way:
     * an entry is pushed once per hazard found. */
    Py_ssize_t capacity = h->capacity ? h->capacity : 8;
    while (capacity < n) {
        capacity = capacity < 8 ? 8 : capacity + capacity / 4; /* replace_all leaves 1 */
    }
    Entry *entries = PyMem_Realloc(h->entries, (size_t)capacity * sizeof(Entry));
    if (entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    h->entries = entries;
    h->capacity = capacity;
    return 0;
}

static int
read_entry(PyObject *deadline, PyObject *round, PyObject *sid, Entry *e)
{
    if (!PyUnicode_Check(sid)) {
        PyErr_Format(PyExc_TypeError, "an id is a str, not %.80s", Py_TYPE(sid)->tp_name);
        return -1;
    }
    double d = PyFloat_AsDouble(deadline);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (d != d) {
        PyErr_SetString(PyExc_ValueError, "a deadline is a number of seconds, not NaN.");
        return -1;
    }
    long long r = PyLong_AsLongLong(round);
    if (r == -1 && PyErr_Occurred()) {
        return -1;
    }
    e->deadline = d;
    e->round = (int64_t)r;
    e->sid = sid;
    return 0;
}

static PyObject *
Heap_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if ((args != NULL && PyTuple_GET_SIZE(args) > 0) || (kwds != NULL && PyDict_GET_SIZE(kwds) > 0)) {
        PyErr_SetString(PyExc_TypeError, "DeadlineHeap() takes no arguments.");
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static void
clear_entries(Heap *h)
{
    for (Py_ssize_t i = 0; i < h->size; i++) {
        Py_DECREF(h->entries[i].sid);
    }
    h->size = 0;
}

static void
Heap_dealloc(Heap *h)
{
    clear_entries(h);
    PyMem_Free(h->entries);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyObject *
Heap_push(Heap *h, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "push(deadline, round, sid) takes 3 arguments.");
        return NULL;
    }
    Entry e;
    if (read_entry(args[0], args[1], args[2], &e) < 0 || reserve(h, h->size + 1) < 0) {
        return NULL;
    }
    Py_INCREF(e.sid);
    h->entries[h->size++] = e;
    if (sift_up(h, h->size - 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Heap_first(Heap *h, PyObject *Py_UNUSED(ignored))
{
    if (h->size == 0) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(h->entries[0].deadline);
}

static PyObject *
entry_tuple(const Entry *e)
{
    PyObject *deadline = PyFloat_FromDouble(e->deadline);
    PyObject *round = PyLong_FromLongLong(e->round);
    PyObject *out = (deadline && round) ? PyTuple_Pack(3, deadline, round, e->sid) : NULL;
    Py_XDECREF(deadline);
    Py_XDECREF(round);
    return out;
}

static PyObject *
Heap_pop(Heap *h, PyObject *Py_UNUSED(ignored))
{
    if (h->size == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty deadline heap.");
        return NULL;
    }
    PyObject *out = entry_tuple(&h->entries[0]);
    if (out == NULL) {
        return NULL;
    }
    Py_DECREF(h->entries[0].sid);
    h->size--;
    if (h->size > 0) {
        h->entries[0] = h->entries[h->size];
        if (sift_down(h, 0) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    if (h->capacity > 64 && h->size < h->capacity / 4) {
        /* Hand memory back once most entries are gone (a rebuild after a sweep). */
        Entry *entries = PyMem_Realloc(h->entries, (size_t)(h->capacity / 2) * sizeof(Entry));
        if (entries != NULL) {
            h->entries = entries;
            h->capacity /= 2;
        }
    }
    return out;
}

static PyObject *
Heap_replace_all(Heap *h, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "replace_all takes a sequence of (deadline, round, id).");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Entry *entries = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Entry));
    if (entries == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "an entry is a (deadline, round, id) tuple.");
            goto fail;
        }
        if (read_entry(PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1),
                       PyTuple_GET_ITEM(item, 2), &entries[i]) < 0) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(entries[i].sid);
    }
    Py_DECREF(seq);
    clear_entries(h);
    PyMem_Free(h->entries);
    h->entries = entries;
    h->size = n;
    h->capacity = n ? n : 1;
    for (Py_ssize_t i = n / 2 - 1; i >= 0; i--) {
        if (sift_down(h, i) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
fail:
    PyMem_Free(entries);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *
Heap_entries(Heap *h, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(h->size);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < h->size; i++) {
        PyObject *t = entry_tuple(&h->entries[i]);
        if (t == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

static Py_ssize_t
Heap_len(Heap *h)
{
    return h->size;
}

static PyObject *
Heap_sizeof(Heap *h, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(Heap) + h->capacity * (Py_ssize_t)sizeof(Entry));
}

static PyMethodDef Heap_methods[] = {
    {"push", (PyCFunction)(void (*)(void))Heap_push, METH_FASTCALL,
     "push(deadline, round, sid): add an entry."},
    {"first", (PyCFunction)Heap_first, METH_NOARGS,
     "first(): the earliest deadline held, None when empty."},
    {"pop", (PyCFunction)Heap_pop, METH_NOARGS,
     "pop(): the earliest (deadline, round, sid), removed; IndexError when empty."},
    {"replace_all", (PyCFunction)Heap_replace_all, METH_O,
     "replace_all(entries): hold exactly these (deadline, round, sid) entries."},
    {"entries", (PyCFunction)Heap_entries, METH_NOARGS,
     "entries(): every (deadline, round, sid) held, in heap order."},
    {"__sizeof__", (PyCFunction)Heap_sizeof, METH_NOARGS, "Bytes held, the array included."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Heap_as_sequence = {
    .sq_length = (lenfunc)Heap_len,
};

static PyTypeObject HeapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._deadlines.DeadlineHeap",
    .tp_doc = "Open hazards' (deadline, round, id) entries, earliest first.",
    .tp_basicsize = sizeof(Heap),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Heap_new,
    .tp_dealloc = (destructor)Heap_dealloc,
    .tp_methods = Heap_methods,
    .tp_as_sequence = &Heap_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streams._deadlines",
    .m_doc = "Open hazards by deadline, in a flat heap (streams/deadlines.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__deadlines(void)
{
    if (PyType_Ready(&HeapType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "DeadlineHeap", (PyObject *)&HeapType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
