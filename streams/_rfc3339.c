/* RFC 3339 times to POSIX seconds, the common form only: streams/validation.py.
 *
 * Every event has a time, and hazards a deadline; through datetime each took about
 * 0.4 us (a datetime made, a timedelta subtracted). `seconds` reads the form senders
 * use, YYYY-MM-DDTHH:MM:SS, 1 to 9 fraction digits, Z or +HH:MM, and returns None for
 * anything else: a leap second, a lower-case t, no seconds, a day that does not exist,
 * a time outside 1686-2254. `rfc3339_seconds` then takes its datetime path, which gives the
 * reason. tests/unit/test_rfc3339.py holds both paths to the same answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
number(const char *s, int width, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int
days_in_month(int y, int m)
{
    static const int DAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        return 29;
    }
    return DAYS[m - 1];
}

static int64_t
days_from_civil(int64_t y, int m, int d)
{
    /* Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant). */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static PyObject *
seconds(PyObject *Py_UNUSED(module), PyObject *text)
{
    if (!PyUnicode_Check(text) || PyUnicode_READY(text) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (!PyUnicode_IS_ASCII(text)) {
        Py_RETURN_NONE;
    }
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int y, mo, d, h, mi, sec;
    if (n < 20 || number(s, 4, &y) || s[4] != '-' || number(s + 5, 2, &mo) || s[7] != '-' ||
        number(s + 8, 2, &d) || s[10] != 'T' || number(s + 11, 2, &h) || s[13] != ':' ||
        number(s + 14, 2, &mi) || s[16] != ':' || number(s + 17, 2, &sec)) {
        Py_RETURN_NONE;
    }
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 59) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 19;
    int64_t us = 0;
    if (s[pos] == '.') {
        Py_ssize_t first = ++pos;
        while (pos < n && is_digit(s[pos])) {
            pos++;
        }
        Py_ssize_t k = pos - first;
        if (k < 1 || k > 9) {
            Py_RETURN_NONE;
        }
        /* Microseconds: the first six digits, the rest cut off (as datetime does). */
        for (Py_ssize_t i = 0; i < 6; i++) {
            us = us * 10 + (i < k ? s[first + i] - '0' : 0);
        }
    }
    double offset;
    Py_ssize_t rest = n - pos;
    if (rest == 1 && (s[pos] == 'Z' || s[pos] == 'z')) {
        offset = 0.0;
    }
    else if (rest == 6 && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
        int oh, om;
        if (number(s + pos + 1, 2, &oh) || number(s + pos + 4, 2, &om)) {
            Py_RETURN_NONE;
        }
        offset = (s[pos] == '-' ? -1.0 : 1.0) * (double)(oh * 3600 + om * 60);
    }
    else {
        Py_RETURN_NONE;
    }
    int64_t total = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000000 + us;
    /* Exact as a double within 2**53 us of the epoch (June 1685 to June 2255): then one
     * division rounds as the datetime path's int / int does. Beyond, that path answers. */
    if (total >= (INT64_C(1) << 53) || total <= -(INT64_C(1) << 53)) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble((double)total / 1e6 - offset);
}

static PyMethodDef methods[] = {
    {"seconds", (PyCFunction)seconds, METH_O,
     "seconds(text) -> float | None: POSIX seconds of an RFC 3339 time in the common form."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "streams._rfc3339",
    "RFC 3339 times to POSIX seconds, the common form only (streams/validation.py).",
    0,
    methods,
};

PyMODINIT_FUNC
PyInit__rfc3339(void)
{
    return PyModule_Create(&module);
}
