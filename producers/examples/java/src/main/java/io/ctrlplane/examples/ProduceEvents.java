package io.ctrlplane.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigInteger;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.zip.CRC32;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Produces Ctrl Plane events from Java with only kafka-clients and Apache Avro.
 *
 * <p>The recipe for any language without a Confluent serializer:
 *
 * <ol>
 *   <li>read the event schema ({@code schemas/avro/event.avsc}) and the type catalog
 *       ({@code schemas/catalog/event_types.json}: event type to subsystem, hence topic);
 *   <li>get the schema id from the registry: {@code POST /subjects/<topic>-value} (lookup), or
 *       {@code POST /subjects/<topic>-value/versions} (register) if the lookup answers 404;
 *   <li>value = {@code 0x00}, the 4-byte big-endian schema id, the Avro binary record;
 *   <li>key = the tenant id (UTF-8), on the partition librdkafka would choose (CRC32 of the
 *       key modulo the partitions, see {@link #partitionOf}); producer with acks=all and
 *       idempotence.
 * </ol>
 *
 * <p>Usage: {@code ProduceEvents --bootstrap host:port --registry http://host:8081 --schema
 * event.avsc --catalog event_types.json [--topic-prefix ctrlplane.] [--tenant ten_1] [--type
 * instance.created] [--count 3]}. Prints one JSON line per event as sent, with its topic,
 * partition and offset.
 */
public final class ProduceEvents {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final SecureRandom RANDOM = new SecureRandom();
  private static final String CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz";
  private static final String REGISTRY_JSON = "application/vnd.schemaregistry.v1+json";

  private ProduceEvents() {}

  /**
   * The partition librdkafka (our Python and Go producers) gives a key: CRC32 of its bytes
   * modulo the partition count. Kafka's Java default (murmur2) would put a tenant's events on
   * another partition than ours and break their per-tenant order.
   */
  static int partitionOf(String key, int partitions) {
    CRC32 crc = new CRC32();
    crc.update(key.getBytes(StandardCharsets.UTF_8));
    return (int) (crc.getValue() % partitions);
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parseArgs(argv);
    String prefix = args.getOrDefault("topic-prefix", "ctrlplane.");
    String tenant = args.getOrDefault("tenant", "ten_java");
    String type = args.getOrDefault("type", "instance.created");
    int count = Integer.parseInt(args.getOrDefault("count", "3"));
    String schemaText = Files.readString(Path.of(require(args, "schema")));
    JsonNode catalog = JSON.readTree(Path.of(require(args, "catalog")).toFile());
    JsonNode subsystem = catalog.path("event_types").get(type);
    if (subsystem == null) {
      throw new IllegalArgumentException("type: unknown event type " + type);
    }
    String topic = prefix + "events." + subsystem.asText();
    Schema schema = new Schema.Parser().parse(schemaText);
    int schemaId = schemaId(require(args, "registry"), topic + "-value", schemaText);

    Properties config = new Properties();
    config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, require(args, "bootstrap"));
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

    try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(config)) {
      int partition = partitionOf(tenant, producer.partitionsFor(topic).size());
      for (int i = 0; i < count; i++) {
        ObjectNode payload = JSON.createObjectNode();
        payload.put("replicas", i + 1);
        payload.put("region", "eu-west-1");
        payload.put("note", "caf\u00e9 \u2713 <&>");
        payload.putArray("tags").add("java").add("example");
        payload.putObject("limits").put("cpu", 0.5).putNull("memory");
        Instant now = Instant.now();
        long micros = now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000L;

        GenericRecord event = new GenericData.Record(schema);
        event.put("id", typeId("evt"));
        event.put("type", type);
        event.put("tenant_id", tenant);
        event.put("instance_id", typeId("inst"));
        event.put("actor_id", "usr_java");
        event.put("payload", JSON.writeValueAsString(payload));
        event.put("timestamp", micros);

        RecordMetadata stored =
            producer
                .send(
                    new ProducerRecord<>(
                        topic, partition, tenant, frame(schemaId, schema, event)))
                .get();
        ObjectNode line = JSON.createObjectNode();
        line.put("id", (String) event.get("id"));
        line.put("type", type);
        line.put("tenant_id", tenant);
        line.put("instance_id", (String) event.get("instance_id"));
        line.put("actor_id", "usr_java");
        line.set("payload", payload);
        line.put("timestamp_micros", micros);
        line.put("topic", stored.topic());
        line.put("partition", stored.partition());
        line.put("offset", stored.offset());
        System.out.println(JSON.writeValueAsString(line));
      }
    }
  }

  /** The Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary. */
  static byte[] frame(int schemaId, Schema schema, GenericRecord record) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(0);
    out.write(ByteBuffer.allocate(4).putInt(schemaId).array());
    BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
    new GenericDatumWriter<GenericRecord>(schema).write(record, encoder);
    encoder.flush();
    return out.toByteArray();
  }

  /** The registry's id for the schema under the subject: look it up, else register it. */
  static int schemaId(String registry, String subject, String schemaText)
      throws IOException, InterruptedException {
    String base = registry.replaceAll("/+$", "") + "/subjects/"
        + URLEncoder.encode(subject, StandardCharsets.UTF_8);
    String body = JSON.writeValueAsString(Map.of("schema", schemaText));
    HttpResponse<String> lookup = post(base, body);
    if (lookup.statusCode() == 200) {
      return JSON.readTree(lookup.body()).get("id").asInt();
    }
    if (lookup.statusCode() != 404) {
      throw new IOException("registry lookup failed: " + lookup.statusCode() + " " + lookup.body());
    }
    HttpResponse<String> registered = post(base + "/versions", body);
    if (registered.statusCode() != 200) {
      throw new IOException(
          "registry register failed: " + registered.statusCode() + " " + registered.body());
    }
    return JSON.readTree(registered.body()).get("id").asInt();
  }

  /** POST with retries on 5xx (e.g. a registry still electing its writer), up to ~30 s. */
  private static HttpResponse<String> post(String url, String body)
      throws IOException, InterruptedException {
    HttpRequest request = HttpRequest.newBuilder(URI.create(url))
        .header("Content-Type", REGISTRY_JSON)
        .header("Accept", REGISTRY_JSON)
        .POST(HttpRequest.BodyPublishers.ofString(body))
        .build();
    HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    for (int attempt = 1; response.statusCode() >= 500 && attempt < 60; attempt++) {
      Thread.sleep(500);
      response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    }
    return response;
  }

  /** A TypeID: prefix + "_" + the 26-character Crockford base32 of a UUIDv7. */
  static String typeId(String prefix) {
    long millis = System.currentTimeMillis();
    byte[] bytes = new byte[16];
    RANDOM.nextBytes(bytes);
    for (int i = 0; i < 6; i++) {
      bytes[i] = (byte) (millis >>> (8 * (5 - i)));
    }
    bytes[6] = (byte) ((bytes[6] & 0x0f) | 0x70); // version 7
    bytes[8] = (byte) ((bytes[8] & 0x3f) | 0x80); // RFC 4122 variant
    BigInteger value = new BigInteger(1, bytes);
    StringBuilder suffix = new StringBuilder();
    for (int i = 25; i >= 0; i--) {
      suffix.append(CROCKFORD.charAt(value.shiftRight(5 * i).intValue() & 31));
    }
    return prefix + "_" + suffix;
  }

  private static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    return args;
  }

  private static String require(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null) {
      throw new IllegalArgumentException("--" + name + " is required");
    }
    return value;
  }
}
