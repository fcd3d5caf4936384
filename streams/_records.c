/* Fetched Kafka record batches read into records in one pass, in C.

aiokafka reads a fetched partition's records one at a time in its consumer thread: a
Python generator steps through each batch, Cython decodes a record into a small object,
and a dataclass of eleven fields is built from it. That was about 8 % of a worker's CPU
under 50,000 events/s (py-spy), in the thread that shares the interpreter with the
counting. ``unpack`` reads a whole buffer of plain batches (version 2, uncompressed, not
control batches) into ``Record``s, which carry the attributes of aiokafka's
``ConsumerRecord``. It reads only what aiokafka would accept: it returns None for any
buffer with something else in it, or anything malformed, and aiokafka then reads that
buffer itself, raising what it raises (the contract is streams/kafka.py
``install_fetch_path``; tests/unit/test_records.py holds it to aiokafka's own reading).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

typedef struct {
    PyObject_HEAD
    PyObject *topic;
    PyObject *key;
    PyObject *value;
    PyObject *headers;
    PyObject *offset_obj;
    long long offset;
    long long timestamp;
    Py_ssize_t key_size;
    Py_ssize_t value_size;
    int partition;
    int timestamp_type;
} Record;

static void
record_dealloc(Record *self)
{
    Py_XDECREF(self->topic);
    Py_XDECREF(self->key);
    Py_XDECREF(self->value);
    Py_XDECREF(self->headers);
    Py_XDECREF(self->offset_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
record_offset(Record *self, void *closure)
{
    return Py_NewRef(self->offset_obj);
}

static PyObject *
record_checksum(Record *self, void *closure)
{
    Py_RETURN_NONE; /* version 2 records have none (aiokafka's is None too) */
}

static PyObject *
record_repr(Record *self)
{
    return PyUnicode_FromFormat(
        "Record(topic=%R, partition=%d, offset=%lld, timestamp=%lld, timestamp_type=%d, "
        "key=%R, value=%R, headers=%R)",
        self->topic, self->partition, self->offset, self->timestamp, self->timestamp_type,
        self->key, self->value, self->headers);
}

static PyMemberDef record_members[] = {
    {"topic", T_OBJECT, offsetof(Record, topic), READONLY, NULL},
    {"partition", T_INT, offsetof(Record, partition), READONLY, NULL},
    {"timestamp", T_LONGLONG, offsetof(Record, timestamp), READONLY, NULL},
    {"timestamp_type", T_INT, offsetof(Record, timestamp_type), READONLY, NULL},
    {"key", T_OBJECT, offsetof(Record, key), READONLY, NULL},
    {"value", T_OBJECT, offsetof(Record, value), READONLY, NULL},
    {"serialized_key_size", T_PYSSIZET, offsetof(Record, key_size), READONLY, NULL},
    {"serialized_value_size", T_PYSSIZET, offsetof(Record, value_size), READONLY, NULL},
    {"headers", T_OBJECT, offsetof(Record, headers), READONLY, NULL},
    {NULL},
};

static PyGetSetDef record_getset[] = {
    {"offset", (getter)record_offset, NULL, NULL, NULL},
    {"checksum", (getter)record_checksum, NULL, NULL, NULL},
    {NULL},
};

/* No cycles can form (bytes, str and tuples of them): not tracked by the collector. */
static PyTypeObject RecordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._records.Record",
    .tp_basicsize = sizeof(Record),
    .tp_dealloc = (destructor)record_dealloc,
    .tp_repr = (reprfunc)record_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A fetched Kafka record, with the attributes of aiokafka's ConsumerRecord.",
    .tp_members = record_members,
    .tp_getset = record_getset,
};

/* Offsets in a version-2 record batch (Kafka's DefaultRecordBatch). */
#define LENGTH_OFFSET 8
#define LOG_OVERHEAD 12
#define MAGIC_OFFSET 16
#define ATTRIBUTES_OFFSET 21
#define LAST_OFFSET_DELTA_OFFSET 23
#define FIRST_TIMESTAMP_OFFSET 27
#define MAX_TIMESTAMP_OFFSET 35
#define RECORD_COUNT_OFFSET 57
#define HEADER_SIZE 61
#define COMPRESSION_MASK 0x07
#define TIMESTAMP_TYPE_MASK 0x08
#define CONTROL_MASK 0x20

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int64_t
be64(const unsigned char *p)
{
    return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4));
}

/* A zigzag varint of at most ``max_bytes`` bytes (5 for an int, 10 for a long); 0 when it
   runs past ``end`` or is longer. */
static int
varint(const unsigned char **pp, const unsigned char *end, int max_bytes, int64_t *out)
{
    const unsigned char *p = *pp;
    uint64_t v = 0;
    for (int shift = 0, i = 0; i < max_bytes; i++, shift += 7) {
        if (p >= end)
            return 0;
        unsigned char b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            *pp = p;
            return 1;
        }
    }
    return 0;
}

/* A nullable byte string: where it starts (NULL for null) and its length; 0 when it
   runs past ``end``. */
static int
nullable(const unsigned char **pp, const unsigned char *end, const unsigned char **at,
         int64_t *len)
{
    if (!varint(pp, end, 5, len))
        return 0;
    if (*len < 0) {
        *at = NULL;
        return 1;
    }
    if (*len > end - *pp)
        return 0;
    *at = *pp;
    *pp += *len;
    return 1;
}

/* 1: read; 0: not a record aiokafka reads the same way (the buffer is left to it);
   -1: a Python error. */
static int
read_record(const unsigned char **pp, const unsigned char *end, int64_t base_offset,
            int64_t first_ts, int64_t max_ts, int ts_type, PyObject *topic, int partition,
            PyObject *no_headers, Record **out)
{
    const unsigned char *p = *pp;
    int64_t length, attrs, ts_delta, offset_delta, key_len, value_len, header_count;
    if (!varint(&p, end, 5, &length) || length < 0 || length > end - p)
        return 0;
    const unsigned char *rec_end = p + length;
    if (!varint(&p, rec_end, 5, &attrs) || !varint(&p, rec_end, 10, &ts_delta)
        || !varint(&p, rec_end, 5, &offset_delta))
        return 0;
    const unsigned char *key, *value;
    if (!nullable(&p, rec_end, &key, &key_len) || !nullable(&p, rec_end, &value, &value_len))
        return 0;
    if (!varint(&p, rec_end, 5, &header_count) || header_count < 0)
        return 0;
    PyObject *headers;
    if (header_count == 0) {
        headers = Py_NewRef(no_headers);
    }
    else {
        if (header_count > rec_end - p)
            return 0; /* each header takes two bytes at least */
        headers = PyTuple_New((Py_ssize_t)header_count);
        if (headers == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < header_count; i++) {
            int64_t h_key_len, h_value_len;
            if (!varint(&p, rec_end, 5, &h_key_len) || h_key_len < 0 || h_key_len > rec_end - p)
                goto not_ours;
            PyObject *h_key = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)h_key_len, NULL);
            if (h_key == NULL) {
                PyErr_Clear(); /* aiokafka raises on it: left to aiokafka */
                goto not_ours;
            }
            p += h_key_len;
            const unsigned char *h_value_at;
            if (!nullable(&p, rec_end, &h_value_at, &h_value_len)) {
                Py_DECREF(h_key);
                goto not_ours;
            }
            PyObject *h_value =
                h_value_at == NULL
                    ? Py_NewRef(Py_None)
                    : PyBytes_FromStringAndSize((const char *)h_value_at, (Py_ssize_t)h_value_len);
            if (h_value == NULL) {
                Py_DECREF(h_key);
                Py_DECREF(headers);
                return -1;
            }
            PyObject *pair = PyTuple_Pack(2, h_key, h_value);
            Py_DECREF(h_key);
            Py_DECREF(h_value);
            if (pair == NULL) {
                Py_DECREF(headers);
                return -1;
            }
            PyTuple_SET_ITEM(headers, i, pair);
        }
    }
    if (p != rec_end) /* aiokafka: "Invalid record size" */
        goto not_ours;
    Record *rec = PyObject_New(Record, &RecordType);
    if (rec == NULL) {
        Py_DECREF(headers);
        return -1;
    }
    rec->key = rec->value = rec->offset_obj = NULL;
    rec->topic = Py_NewRef(topic);
    rec->headers = headers;
    rec->partition = partition;
    rec->timestamp_type = ts_type;
    rec->timestamp = max_ts;
    if (!ts_type && __builtin_add_overflow(first_ts, ts_delta, &rec->timestamp))
        goto too_big;
    if (__builtin_add_overflow(base_offset, offset_delta, &rec->offset))
        goto too_big;
    rec->key_size = key == NULL ? -1 : (Py_ssize_t)key_len;
    rec->value_size = value == NULL ? -1 : (Py_ssize_t)value_len;
    rec->key = key == NULL ? Py_NewRef(Py_None)
                           : PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)key_len);
    rec->value = value == NULL
                     ? Py_NewRef(Py_None)
                     : PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)value_len);
    rec->offset_obj = PyLong_FromLongLong(rec->offset);
    if (rec->key == NULL || rec->value == NULL || rec->offset_obj == NULL) {
        Py_DECREF(rec);
        return -1;
    }
    *pp = p;
    *out = rec;
    return 1;
too_big: /* past a 64-bit integer, which aiokafka's Python ints are not: left to it */
    Py_DECREF(rec);
    return 0;
not_ours:
    Py_DECREF(headers);
    return 0;
}

static PyObject *
py_unpack(PyObject *self, PyObject *args)
{
    Py_buffer view;
    long long fetch_offset;
    PyObject *topic;
    int partition;
    if (!PyArg_ParseTuple(args, "y*LUi:unpack", &view, &fetch_offset, &topic, &partition))
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t pos = 0, len = view.len;
    long long next_offset = fetch_offset;
    PyObject *records = PyList_New(0);
    PyObject *no_headers = PyTuple_New(0);
    if (records == NULL || no_headers == NULL)
        goto error;
    /* A batch cut off at the end of the buffer is not read (aiokafka fetches it again). */
    while (len - pos >= LOG_OVERHEAD) {
        const unsigned char *b = buf + pos;
        int32_t length = (int32_t)be32(b + LENGTH_OFFSET);
        if (length < HEADER_SIZE - LOG_OVERHEAD)
            goto not_ours;
        if (len - pos - LOG_OVERHEAD < (Py_ssize_t)length)
            break;
        int attributes = (b[ATTRIBUTES_OFFSET] << 8) | b[ATTRIBUTES_OFFSET + 1];
        if (b[MAGIC_OFFSET] != 2 || attributes & (COMPRESSION_MASK | CONTROL_MASK))
            goto not_ours;
        int64_t base_offset = be64(b);
        int64_t last_delta = (int32_t)be32(b + LAST_OFFSET_DELTA_OFFSET);
        int64_t first_ts = be64(b + FIRST_TIMESTAMP_OFFSET);
        int64_t max_ts = be64(b + MAX_TIMESTAMP_OFFSET);
        int32_t count = (int32_t)be32(b + RECORD_COUNT_OFFSET);
        int ts_type = (attributes & TIMESTAMP_TYPE_MASK) ? 1 : 0;
        const unsigned char *p = b + HEADER_SIZE;
        const unsigned char *end = b + LOG_OVERHEAD + length;
        if (count < 0)
            goto not_ours;
        for (int32_t i = 0; i < count; i++) {
            Record *rec;
            int got = read_record(&p, end, base_offset, first_ts, max_ts, ts_type, topic,
                                  partition, no_headers, &rec);
            if (got < 0)
                goto error;
            if (got == 0)
                goto not_ours;
            /* Records before the fetch offset come with a batch fetched from its middle
               (aiokafka skips them too). */
            if (rec->offset < next_offset) {
                Py_DECREF(rec);
                continue;
            }
            next_offset = rec->offset + 1;
            int appended = PyList_Append(records, (PyObject *)rec);
            Py_DECREF(rec);
            if (appended < 0)
                goto error;
        }
        if (p != end) /* aiokafka: "unconsumed bytes after all records consumed" */
            goto not_ours;
        /* After the batch's last offset, even when compaction removed its last records
           (as aiokafka sets it). */
        if (__builtin_add_overflow(base_offset, last_delta + 1, &next_offset))
            goto not_ours;
        pos += LOG_OVERHEAD + length;
    }
    PyBuffer_Release(&view);
    Py_DECREF(no_headers);
    PyObject *result = Py_BuildValue("(NL)", records, next_offset);
    return result;
not_ours:
    PyBuffer_Release(&view);
    Py_DECREF(records);
    Py_DECREF(no_headers);
    Py_RETURN_NONE;
error:
    PyBuffer_Release(&view);
    Py_XDECREF(records);
    Py_XDECREF(no_headers);
    return NULL;
}

static PyMethodDef methods[] = {
    {"unpack", py_unpack, METH_VARARGS,
     "unpack(data, fetch_offset, topic, partition) -> (records, next_offset) or None: the "
     "records at or after fetch_offset of a buffer of plain version-2 record batches, and "
     "the offset to fetch next; None when the buffer holds anything else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_records", "Fetched Kafka record batches read into records.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    if (PyType_Ready(&RecordType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Record", (PyObject *)&RecordType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
