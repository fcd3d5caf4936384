package io.watchfloor.bench.kstreams;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.rocksdb.Options;
import org.rocksdb.RocksDB;
import org.rocksdb.RocksDBException;
import org.rocksdb.RocksIterator;

/**
 * The counting job of tests/benchmarks/job.py as a Kafka Streams application: the
 * benchmark's second peer (docs/performance.md).
 *
 * <p>{@code CountingJob SPEC RESULT}: the spec and the result are the JSON files of the
 * benchmark's child protocol (tests/benchmarks/proc.py). One stream per source topic, as the
 * Quix Streams peer has one dataframe per topic; each runs a processor with two persistent
 * key-value stores (RocksDB, each with its changelog topic): {@code seen-<role>}, keyed
 * {@code source|id}, de-duplicates; {@code counts-<role>}, keyed {@code district|type},
 * counts. Both stores have Kafka Streams' record cache in front of them ({@code
 * withCachingEnabled()}: the DSL's default for its stores; stores of the Processor API have it
 * only when asked), so repeated updates of a key between commits reach RocksDB and the
 * changelog once, as Quix's checkpoints do. Kafka Streams' defaults otherwise: one stream
 * thread, at-least-once (set explicitly), a commit every 30 s, a 10 MB cache. When every
 * record is counted (or
 * the time box ends) the application is closed, which flushes the caches into RocksDB and
 * the changelogs and commits; the counts are then read back from the RocksDB stores on
 * disk, not from a copy kept on the side.
 */
public final class CountingJob {
    static final String SEP = "|";

    /** Shared by the processors of every task; all run on the one stream thread. */
    static final class Progress {
        final long total;
        final double maxSeconds;
        final CountDownLatch done = new CountDownLatch(1);
        final Map<String, Long> positions = new ConcurrentHashMap<>();
        volatile boolean finished;
        long processed;
        long deadlineNanos;
        double firstAt;
        long cpuFirst;
        double lastAt;
        long cpuLast;
        boolean complete;
        volatile Throwable failure;

        Progress(long total, double maxSeconds) {
            this.total = total;
            this.maxSeconds = maxSeconds;
        }

        void first(double now) {
            firstAt = now;
            cpuFirst = cpuNanos();
            deadlineNanos = System.nanoTime() + (long) (maxSeconds * 1e9);
        }

        void counted(RecordMetadata md) {
            positions.put(md.topic() + ":" + md.partition(), md.offset() + 1);
            long n = ++processed;
            if (n >= total || System.nanoTime() > deadlineNanos) {
                lastAt = now();
                cpuLast = cpuNanos();
                complete = n >= total;
                finished = true;
                done.countDown();
            }
        }

        void failed(Throwable e) {
            failure = e;
            finished = true;
            done.countDown();
        }
    }

    /** Steps 1-5 of the job for the records of one topic. */
    static final class Count implements Processor<byte[], byte[], Void, Void> {
        private final EnvelopeCheck check;
        private final Progress progress;
        private final String seenName;
        private final String countsName;
        private ProcessorContext<Void, Void> context;
        private KeyValueStore<String, Boolean> seen;
        private KeyValueStore<String, Long> counts;

        Count(EnvelopeCheck check, Progress progress, String seenName, String countsName) {
            this.check = check;
            this.progress = progress;
            this.seenName = seenName;
            this.countsName = countsName;
        }

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            this.context = context;
            this.seen = context.getStateStore(seenName);
            this.counts = context.getStateStore(countsName);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            if (progress.finished) return; // time box over: what follows is not counted
            double now = now();
            if (progress.processed == 0) progress.first(now);
            EnvelopeCheck.Parsed p = check.check(record.value(), now);
            if (p != null) {
                String seenKey = p.source() + SEP + p.id();
                if (seen.get(seenKey) == null) {
                    seen.put(seenKey, Boolean.TRUE);
                    String countKey = p.district() + SEP + p.type();
                    Long n = counts.get(countKey);
                    counts.put(countKey, n == null ? 1L : n + 1);
                }
            }
            progress.counted(context.recordMetadata().orElseThrow());
        }
    }

    static double now() {
        return System.currentTimeMillis() / 1000.0;
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean)
                        ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    static long peakRss() throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.split("\\s+")[1]) * 1024;
            }
        }
        return 0;
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        long cpu0 = cpuNanos();
        Map<String, Object> spec =
                (Map<String, Object>) Json.parse(Files.readAllBytes(Path.of(args[0])));
        Path resultPath = Path.of(args[1]);
        Map<String, Object> job = (Map<String, Object>) spec.get("job");
        Map<String, String> topics = (Map<String, String>) spec.get("topics"); // role -> topic
        Set<String> districts = new HashSet<>((List<String>) spec.get("districts"));
        Map<String, String> roleOfType = (Map<String, String>) job.get("role_of_type");
        int maxBytes = ((Number) job.get("max_bytes")).intValue();
        double earliest = ((Number) job.get("earliest_ts")).doubleValue();
        double maxFuture = ((Number) job.get("max_future_seconds")).doubleValue();
        String group = (String) spec.get("group");
        Path stateDir = Path.of((String) spec.get("state_dir"));
        double maxSeconds = ((Number) spec.getOrDefault("max_seconds", 3600L)).doubleValue();
        Progress progress = new Progress(((Number) spec.get("events")).longValue(), maxSeconds);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, group);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, spec.get("bootstrap"));
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(
                StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        StreamsBuilder builder = new StreamsBuilder();
        List<String> stores = new ArrayList<>();
        for (Map.Entry<String, String> e : topics.entrySet()) {
            String role = e.getKey();
            String seenName = "seen-" + role;
            String countsName = "counts-" + role;
            builder.addStateStore(
                    Stores.keyValueStoreBuilder(
                                    Stores.persistentKeyValueStore(seenName),
                                    Serdes.String(),
                                    Serdes.Boolean())
                            .withCachingEnabled());
            builder.addStateStore(
                    Stores.keyValueStoreBuilder(
                                    Stores.persistentKeyValueStore(countsName),
                                    Serdes.String(),
                                    Serdes.Long())
                            .withCachingEnabled());
            stores.add(seenName);
            stores.add(countsName);
            EnvelopeCheck check =
                    new EnvelopeCheck(districts, roleOfType, role, maxBytes, earliest, maxFuture);
            builder.stream(
                            e.getValue(),
                            Consumed.with(Serdes.ByteArray(), Serdes.ByteArray())
                                    .withName("read-" + role))
                    .process(
                            () -> new Count(check, progress, seenName, countsName),
                            Named.as("count-" + role),
                            seenName,
                            countsName);
        }
        Topology topology = builder.build();

        KafkaStreams streams = new KafkaStreams(topology, props);
        streams.setUncaughtExceptionHandler(
                e -> {
                    progress.failed(e);
                    return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                            .SHUTDOWN_CLIENT;
                });
        streams.setStateListener(
                (state, before) -> {
                    if (state == KafkaStreams.State.ERROR) {
                        progress.failed(new IllegalStateException("Kafka Streams is in ERROR"));
                    }
                });
        streams.start();
        boolean ended = progress.done.await((long) maxSeconds + 300, TimeUnit.SECONDS);
        if (!ended) {
            progress.lastAt = now();
            progress.cpuLast = cpuNanos();
            progress.finished = true;
        }
        double closeStart = now();
        streams.close();
        double closed = now();
        if (progress.failure != null) {
            progress.failure.printStackTrace();
            System.exit(1);
        }

        Map<String, Object> result = new LinkedHashMap<>();
        result.put("impl", "kstreams");
        result.put("processed", progress.processed);
        result.put("complete", progress.complete);
        if (progress.processed > 0) {
            result.put("first_at", progress.firstAt);
            result.put("last_at", progress.lastAt);
            result.put(
                    "cpu_processing_seconds",
                    round3((progress.cpuLast - progress.cpuFirst) / 1e9));
        }
        result.put("close_seconds", round3(closed - closeStart));
        result.put("positions", new TreeMap<>(progress.positions));
        result.put("counts", readCounts(stateDir.resolve(group)));
        result.put("stores", stores);
        List<String> changelogs = new ArrayList<>();
        for (String store : stores) changelogs.add(group + "-" + store + "-changelog");
        result.put(
                "changelog_records",
                changelogRecords((String) spec.get("bootstrap"), changelogs));
        result.put("kafka_streams_version", streamsVersion());
        result.put("java_version", System.getProperty("java.version"));
        result.put("jvm_max_heap_bytes", Runtime.getRuntime().maxMemory());
        result.put("jvm_args", ManagementFactory.getRuntimeMXBean().getInputArguments());
        result.put("cpu_seconds", round3((cpuNanos() - cpu0) / 1e9));
        result.put("peak_rss_bytes", peakRss());
        StringBuilder out = new StringBuilder();
        Json.write(out, result);
        Path tmp = resultPath.resolveSibling(resultPath.getFileName() + ".tmp");
        Files.writeString(tmp, out.toString());
        Files.move(tmp, resultPath, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        System.exit(0);
    }

    /** Records in each changelog topic (the sum of its partitions' end offsets). */
    static Map<String, Object> changelogRecords(String bootstrap, List<String> topics)
            throws Exception {
        Map<String, Object> out = new TreeMap<>();
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, OffsetSpec> wanted = new HashMap<>();
            for (TopicDescription d : admin.describeTopics(topics).allTopicNames().get().values()) {
                for (TopicPartitionInfo p : d.partitions()) {
                    wanted.put(new TopicPartition(d.name(), p.partition()), OffsetSpec.latest());
                }
            }
            admin.listOffsets(wanted)
                    .all()
                    .get()
                    .forEach((tp, info) -> out.merge(
                            tp.topic(), info.offset(), (a, b) -> (Long) a + (Long) b));
        }
        return out;
    }

    static String streamsVersion() throws IOException {
        Properties p = new Properties();
        String name = "/kafka/kafka-streams-version.properties";
        try (var in = KafkaStreams.class.getResourceAsStream(name)) {
            if (in != null) p.load(in);
        }
        return p.getProperty("version", "unknown");
    }

    static double round3(double x) {
        return Math.round(x * 1000) / 1000.0;
    }

    /**
     * The counts of every {@code counts-*} RocksDB store the closed application left under
     * {@code appDir} (one per task: {@code <task>/rocksdb/counts-<role>}), opened read-only.
     * Keys are String-serialized ({@code district|type}, UTF-8), values Long-serialized
     * (8 bytes, big-endian).
     */
    static Map<String, Object> readCounts(Path appDir) throws IOException, RocksDBException {
        RocksDB.loadLibrary();
        Map<String, Object> counts = new TreeMap<>();
        List<Path> dbs;
        try (Stream<Path> walk = Files.walk(appDir)) {
            dbs = walk.filter(p -> p.getFileName().toString().equals("CURRENT"))
                    .map(Path::getParent)
                    .filter(p -> p.getFileName().toString().startsWith("counts-"))
                    .sorted()
                    .toList();
        }
        for (Path path : dbs) {
            try (Options options = new Options();
                    RocksDB db = RocksDB.openReadOnly(options, path.toString());
                    RocksIterator it = db.newIterator()) {
                for (it.seekToFirst(); it.isValid(); it.next()) {
                    String key = new String(it.key(), StandardCharsets.UTF_8);
                    long value = ByteBuffer.wrap(it.value()).getLong();
                    if (counts.put(key, value) != null) {
                        throw new IllegalStateException("count key " + key + " in two stores");
                    }
                }
            }
        }
        return counts;
    }
}
