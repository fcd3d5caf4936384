package io.watchfloor.bench.kstreams;

import java.util.Map;
import java.util.Set;

/**
 * Steps 1-3 of the counting job of tests/benchmarks/job.py for one topic, line for line as
 * {@code EnvelopeCheck.check} there: size, strict JSON object, envelope fields, time range.
 * The type-to-topic table and the limits come from the spec that job.py writes, so the two
 * cannot drift apart.
 */
final class EnvelopeCheck {
    /** What a record counts as: district, type, and its de-duplication pair (source, id). */
    record Parsed(String district, String type, String source, String id) {}

    private final Set<String> districts;
    private final Map<String, String> roleOfType;
    private final String role;
    private final int maxBytes;
    private final double earliest;
    private final double maxFuture;

    EnvelopeCheck(
            Set<String> districts,
            Map<String, String> roleOfType,
            String role,
            int maxBytes,
            double earliest,
            double maxFuture) {
        this.districts = districts;
        this.roleOfType = roleOfType;
        this.role = role;
        this.maxBytes = maxBytes;
        this.earliest = earliest;
        this.maxFuture = maxFuture;
    }

    Parsed check(byte[] raw, double now) {
        if (raw == null || raw.length == 0 || raw.length > maxBytes) return null;
        Object parsed;
        try {
            parsed = Json.parse(raw);
        } catch (Json.Error e) {
            return null;
        }
        if (!(parsed instanceof Map<?, ?> doc)) return null;
        if (!(doc.get("type") instanceof String type) || !role.equals(roleOfType.get(type))) {
            return null;
        }
        if (!(doc.get("district") instanceof String district) || !districts.contains(district)) {
            return null;
        }
        if (!"1.0".equals(doc.get("specversion"))) return null;
        if (!(doc.get("source") instanceof String source) || source.isEmpty()) return null;
        if (!(doc.get("id") instanceof String id) || id.isEmpty()) return null;
        if (!(doc.get("subject") instanceof String subject) || subject.isEmpty()) return null;
        if (!(doc.get("time") instanceof String when)) return null;
        double ts = Times.epochSeconds(when);
        if (Double.isNaN(ts) || ts < earliest || ts > now + maxFuture) return null;
        return new Parsed(district, type, source, id);
    }
}
