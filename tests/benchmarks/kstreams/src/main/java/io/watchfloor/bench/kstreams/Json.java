package io.watchfloor.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A strict JSON reader (RFC 8259, as strict as orjson) and a small writer.
 *
 * <p>The counting job decodes every record the way {@code orjson.loads} does: the whole
 * document must be valid UTF-8 and valid JSON (no NaN, no trailing commas, no control
 * characters in strings, no lone surrogates, at most 1,024 levels of nesting), objects keep
 * the last of duplicate keys. Objects become {@link Map}s, arrays {@link List}s, strings
 * {@link String}s, numbers {@link Long} or {@link Double}, true/false {@link Boolean}, null
 * Java's null. Kafka Streams brings no JSON library of its own, and the benchmark's rules
 * allow it only kafka-streams and logging, so the reader is here.
 */
final class Json {
    static final class Error extends Exception {
        Error(String message) {
            super(message, null, false, false); // no stack trace: rejections are data, not bugs
        }
    }

    private static final int MAX_DEPTH = 1024;
    private final byte[] b;
    private int pos;
    private final StringBuilder sb = new StringBuilder(64);

    private Json(byte[] bytes) {
        this.b = bytes;
    }

    static Object parse(byte[] bytes) throws Error {
        Json p = new Json(bytes);
        p.skipWs();
        Object value = p.value(0);
        p.skipWs();
        if (p.pos != bytes.length) throw new Error("trailing data");
        return value;
    }

    private void skipWs() {
        while (pos < b.length) {
            byte c = b[pos];
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') pos++;
            else return;
        }
    }

    private Object value(int depth) throws Error {
        if (pos >= b.length) throw new Error("unexpected end");
        switch (b[pos]) {
            case '{':
                return object(depth + 1);
            case '[':
                return array(depth + 1);
            case '"':
                return string();
            case 't':
                literal("true");
                return Boolean.TRUE;
            case 'f':
                literal("false");
                return Boolean.FALSE;
            case 'n':
                literal("null");
                return null;
            default:
                return number();
        }
    }

    private void literal(String word) throws Error {
        int n = word.length();
        if (pos + n > b.length) throw new Error("unexpected end");
        for (int i = 0; i < n; i++) {
            if (b[pos + i] != word.charAt(i)) throw new Error("bad literal");
        }
        pos += n;
    }

    private Map<String, Object> object(int depth) throws Error {
        if (depth > MAX_DEPTH) throw new Error("too deep");
        pos++; // {
        Map<String, Object> out = new HashMap<>();
        skipWs();
        if (pos < b.length && b[pos] == '}') {
            pos++;
            return out;
        }
        while (true) {
            skipWs();
            if (pos >= b.length || b[pos] != '"') throw new Error("expected a key");
            String key = string();
            skipWs();
            if (pos >= b.length || b[pos] != ':') throw new Error("expected ':'");
            pos++;
            skipWs();
            out.put(key, value(depth));
            skipWs();
            if (pos >= b.length) throw new Error("unexpected end");
            byte c = b[pos++];
            if (c == '}') return out;
            if (c != ',') throw new Error("expected ',' or '}'");
        }
    }

    private List<Object> array(int depth) throws Error {
        if (depth > MAX_DEPTH) throw new Error("too deep");
        pos++; // [
        List<Object> out = new ArrayList<>();
        skipWs();
        if (pos < b.length && b[pos] == ']') {
            pos++;
            return out;
        }
        while (true) {
            skipWs();
            out.add(value(depth));
            skipWs();
            if (pos >= b.length) throw new Error("unexpected end");
            byte c = b[pos++];
            if (c == ']') return out;
            if (c != ',') throw new Error("expected ',' or ']'");
        }
    }

    private String string() throws Error {
        pos++; // opening quote
        // Fast path: plain ASCII without escapes, the common case.
        int start = pos;
        while (pos < b.length) {
            byte c = b[pos];
            if (c == '"') {
                pos++;
                return new String(b, start, pos - 1 - start, StandardCharsets.ISO_8859_1);
            }
            if (c == '\\' || c < 0x20) break; // bytes >= 0x80 are negative: slow path
            pos++;
        }
        sb.setLength(0);
        for (int i = start; i < pos; i++) sb.append((char) b[i]);
        while (true) {
            if (pos >= b.length) throw new Error("unterminated string");
            int c = b[pos] & 0xff;
            if (c == '"') {
                pos++;
                return sb.toString();
            }
            if (c < 0x20) throw new Error("control character in string");
            if (c == '\\') {
                escape();
            } else if (c < 0x80) {
                sb.append((char) c);
                pos++;
            } else {
                utf8(c);
            }
        }
    }

    private void escape() throws Error {
        if (pos + 1 >= b.length) throw new Error("unterminated escape");
        byte e = b[pos + 1];
        pos += 2;
        switch (e) {
            case '"': sb.append('"'); return;
            case '\\': sb.append('\\'); return;
            case '/': sb.append('/'); return;
            case 'b': sb.append('\b'); return;
            case 'f': sb.append('\f'); return;
            case 'n': sb.append('\n'); return;
            case 'r': sb.append('\r'); return;
            case 't': sb.append('\t'); return;
            case 'u': break;
            default: throw new Error("bad escape");
        }
        int unit = hex4();
        if (Character.isHighSurrogate((char) unit)) {
            if (pos + 1 < b.length && b[pos] == '\\' && b[pos + 1] == 'u') {
                pos += 2;
                int low = hex4();
                if (!Character.isLowSurrogate((char) low)) throw new Error("no low surrogate");
                sb.append((char) unit).append((char) low);
                return;
            }
            throw new Error("no low surrogate");
        }
        if (Character.isLowSurrogate((char) unit)) throw new Error("lone low surrogate");
        sb.append((char) unit);
    }

    private int hex4() throws Error {
        if (pos + 4 > b.length) throw new Error("short \\u escape");
        int v = 0;
        for (int i = 0; i < 4; i++) {
            int d = Character.digit(b[pos + i], 16);
            if (d < 0) throw new Error("bad \\u escape");
            v = v * 16 + d;
        }
        pos += 4;
        return v;
    }

    /** One UTF-8 sequence starting with lead byte {@code c} (>= 0x80), validated strictly. */
    private void utf8(int c) throws Error {
        int need;
        int cp;
        int min;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            throw new Error("invalid UTF-8");
        }
        if (pos + need >= b.length) throw new Error("invalid UTF-8");
        for (int i = 1; i <= need; i++) {
            int cont = b[pos + i] & 0xff;
            if ((cont & 0xc0) != 0x80) throw new Error("invalid UTF-8");
            cp = (cp << 6) | (cont & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            throw new Error("invalid UTF-8");
        }
        sb.appendCodePoint(cp);
        pos += need + 1;
    }

    private Object number() throws Error {
        int start = pos;
        boolean integral = true;
        if (pos < b.length && b[pos] == '-') pos++;
        if (pos >= b.length) throw new Error("bad number");
        if (b[pos] == '0') {
            pos++;
        } else if (b[pos] >= '1' && b[pos] <= '9') {
            while (pos < b.length && b[pos] >= '0' && b[pos] <= '9') pos++;
        } else {
            throw new Error("unexpected character");
        }
        if (pos < b.length && b[pos] == '.') {
            integral = false;
            pos++;
            if (!digits()) throw new Error("bad fraction");
        }
        if (pos < b.length && (b[pos] == 'e' || b[pos] == 'E')) {
            integral = false;
            pos++;
            if (pos < b.length && (b[pos] == '+' || b[pos] == '-')) pos++;
            if (!digits()) throw new Error("bad exponent");
        }
        String text = new String(b, start, pos - start, StandardCharsets.ISO_8859_1);
        if (integral && pos - start <= 18) return Long.parseLong(text);
        double d = Double.parseDouble(text);
        if (Double.isInfinite(d)) throw new Error("number out of range");
        return d;
    }

    private boolean digits() {
        int start = pos;
        while (pos < b.length && b[pos] >= '0' && b[pos] <= '9') pos++;
        return pos > start;
    }

    // -- writing ----------------------------------------------------------------------

    static void writeString(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
            }
        }
        out.append('"');
    }

    @SuppressWarnings("unchecked")
    static void write(StringBuilder out, Object value) {
        if (value == null) {
            out.append("null");
        } else if (value instanceof String s) {
            writeString(out, s);
        } else if (value instanceof Map<?, ?> m) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) m).entrySet()) {
                if (!first) out.append(',');
                first = false;
                writeString(out, e.getKey());
                out.append(':');
                write(out, e.getValue());
            }
            out.append('}');
        } else if (value instanceof List<?> l) {
            out.append('[');
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) out.append(',');
                write(out, l.get(i));
            }
            out.append(']');
        } else if (value instanceof Double d && (d.isNaN() || d.isInfinite())) {
            out.append("null");
        } else {
            out.append(value); // Boolean, Long, Integer, Double
        }
    }
}
