package io.watchfloor.bench.kstreams;

/**
 * The envelope's {@code time}, read as the Python job reads it: {@code
 * datetime.fromisoformat(when)} (Python 3.11) that must carry a UTC offset, then {@code
 * .timestamp()}.
 *
 * <p>Accepted, as fromisoformat accepts them: {@code YYYY-MM-DD}, any one separator
 * character, {@code HH[:MM[:SS[(.|,)digits]]]} (digits past the sixth are dropped), then
 * {@code Z} or an offset {@code ±HH[:MM[:SS[.ffffff]]]} or {@code ±HHMM} strictly inside
 * ±24 h. Fields are range-checked like datetime's (year 1-9999, the month's days, hour
 * 0-23, minute and second 0-59). fromisoformat's basic forms ({@code 20261128T150000Z})
 * and ISO week dates are not read: the records of the benchmark never use them.
 */
final class Times {
    private Times() {}

    /** Seconds since the epoch, or NaN when the text is no ISO time with an offset. */
    static double epochSeconds(String s) {
        int n = s.length();
        if (n < 11 + 2 + 1) return Double.NaN; // date, separator, HH, Z at the least
        int year = num(s, 0, 4);
        int month = num(s, 5, 2);
        int day = num(s, 8, 2);
        if (year < 1 || month < 1 || month > 12 || s.charAt(4) != '-' || s.charAt(7) != '-') {
            return Double.NaN;
        }
        if (day < 1 || day > daysIn(year, month)) return Double.NaN;
        // s.charAt(10) is the separator: any character.
        int p = 11;
        int hour = num(s, p, 2);
        int minute = 0;
        int second = 0;
        int micros = 0;
        p += 2;
        if (p < n && s.charAt(p) == ':') {
            minute = num(s, p + 1, 2);
            p += 3;
            if (p < n && s.charAt(p) == ':') {
                second = num(s, p + 1, 2);
                p += 3;
                if (p < n && (s.charAt(p) == '.' || s.charAt(p) == ',')) {
                    p++;
                    int digits = 0;
                    while (p < n && isDigit(s.charAt(p))) {
                        if (digits < 6) micros = micros * 10 + (s.charAt(p) - '0');
                        digits++;
                        p++;
                    }
                    for (int i = digits; i < 6; i++) micros *= 10;
                }
            }
        }
        if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
            return Double.NaN;
        }
        int offset = offsetSeconds(s, p);
        if (offset == Integer.MIN_VALUE) return Double.NaN;
        long days = epochDay(year, month, day);
        long secs = days * 86_400L + hour * 3600L + minute * 60L + second - offset;
        return secs + micros / 1e6;
    }

    /** The offset starting at {@code p} up to the end, in seconds; MIN_VALUE if none. */
    private static int offsetSeconds(String s, int p) {
        int n = s.length();
        if (p >= n) return Integer.MIN_VALUE; // naive: no offset
        char sign = s.charAt(p);
        if (sign == 'Z') return p + 1 == n ? 0 : Integer.MIN_VALUE;
        if (sign != '+' && sign != '-') return Integer.MIN_VALUE;
        p++;
        int rest = n - p;
        int hh;
        int mm = 0;
        int ss = 0;
        if (rest == 2) {
            hh = num(s, p, 2);
        } else if (rest == 4) {
            hh = num(s, p, 2);
            mm = num(s, p + 2, 2);
        } else if (rest >= 5 && s.charAt(p + 2) == ':') {
            hh = num(s, p, 2);
            mm = num(s, p + 3, 2);
            if (rest == 5) {
                // ±HH:MM
            } else if (rest >= 8 && s.charAt(p + 5) == ':') {
                ss = num(s, p + 6, 2);
                int q = p + 8;
                if (q < n) {
                    if (s.charAt(q) != '.' || q + 1 == n) return Integer.MIN_VALUE;
                    for (int i = q + 1; i < n; i++) {
                        if (!isDigit(s.charAt(i))) return Integer.MIN_VALUE;
                    }
                }
            } else {
                return Integer.MIN_VALUE;
            }
        } else {
            return Integer.MIN_VALUE;
        }
        if (hh < 0 || mm < 0 || ss < 0) return Integer.MIN_VALUE;
        int total = hh * 3600 + mm * 60 + ss;
        if (total >= 86_400) return Integer.MIN_VALUE; // datetime.timezone's bound
        return sign == '-' ? -total : total;
    }

    /** The decimal number of {@code len} digits at {@code at}; -1 if any is not a digit. */
    private static int num(String s, int at, int len) {
        if (at + len > s.length()) return -1;
        int v = 0;
        for (int i = at; i < at + len; i++) {
            char c = s.charAt(i);
            if (!isDigit(c)) return -1;
            v = v * 10 + (c - '0');
        }
        return v;
    }

    private static boolean isDigit(char c) {
        return c >= '0' && c <= '9';
    }

    private static int daysIn(int year, int month) {
        switch (month) {
            case 2:
                boolean leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
                return leap ? 29 : 28;
            case 4: case 6: case 9: case 11:
                return 30;
            default:
                return 31;
        }
    }

    /** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
    private static long epochDay(int y, int m, int d) {
        long yy = m <= 2 ? y - 1 : y;
        long era = Math.floorDiv(yy, 400);
        long yoe = yy - era * 400;
        long doy = (153L * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146_097 + doe - 719_468;
    }
}
