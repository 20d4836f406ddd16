// Ctrl Plane events from Node.js: kafkajs, @kafkajs/confluent-schema-registry (the Confluent
// wire format: 0x00, schema id, Avro binary) against our registry, and an lz4 codec.
//
//   node index.js consume --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 \
//       --topic ctrlplane.events.instance --group my-group --count 3
//   node index.js produce --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 \
//       --topic ctrlplane.events.instance --tenant ten_node --type instance.created \
//       --count 3 [--traceparent 00-<trace id>-<span id>-01]
//
// consume reads the topic from the beginning in consumer group --group and prints each event
// as one JSON line {topic, partition, offset, traceparent, event}; it stops after --count.
// produce writes --count events (lz4-compressed, keyed by tenant id, with the W3C traceparent
// header if given; the schema is the latest under the subject <topic>-value, which our
// services register) and prints one JSON line {topic, partition, offset, id} per event.
//
// kafkajs ships only gzip; our producers compress with lz4, so a consumer must register an lz4
// codec before it reads a batch: lz4js is pure JavaScript (no native build).
'use strict'

const crypto = require('crypto')
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry')
const lz4 = require('lz4js')

// Kafka's lz4 is the LZ4 frame format, which lz4js reads and writes. Kafka's brokers refuse
// frames without the block-independence flag, which lz4js leaves unset: a batch (at most the
// request size, far below lz4js's 4 MB block) is one block, independent by construction, so the
// flag is set and the header checksum recomputed.
const xxh32 = require('lz4js/xxh32.js')
const BLOCK_INDEPENDENCE = 0x20

function kafkaLz4 (data) {
  const frame = Buffer.from(lz4.compress(data))
  frame[4] |= BLOCK_INDEPENDENCE // FLG, after the 4-byte magic number
  frame[6] = (xxh32.hash(0, frame, 4, 2) >> 8) & 0xff // HC: 2nd byte of xxh32(FLG, BD)
  return frame
}

CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress (encoder) {
    return kafkaLz4(encoder.buffer)
  },
  async decompress (buffer) {
    return Buffer.from(lz4.decompress(buffer))
  }
})

// Our producers (librdkafka) place a keyed record on crc32(key) % partitions (its default
// "consistent_random" partitioner); kafkajs's default is Java's murmur2, which would put a
// tenant's events on another partition than ours and break their per-tenant order.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32 (bytes) {
  let crc = 0xffffffff
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

const librdkafkaPartitioner = () => ({ partitionMetadata, message }) => {
  const key = message.key == null ? crypto.randomBytes(4) : Buffer.from(message.key)
  return crc32(key) % partitionMetadata.length
}

function parseArgs (argv) {
  const [command, ...rest] = argv
  const options = {}
  for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith('--') || rest[i + 1] === undefined) {
      throw new Error(`bad argument ${rest[i]}`)
    }
    options[rest[i].slice(2)] = rest[i + 1]
  }
  for (const required of ['bootstrap', 'registry', 'topic']) {
    if (!options[required]) throw new Error(`--${required} is required`)
  }
  return { command, options }
}

function clients (options) {
  const kafka = new Kafka({
    clientId: 'cpevents-node-example',
    brokers: options.bootstrap.split(','),
    logLevel: logLevel.WARN
  })
  // Basic auth, when the registry has users: CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH=user:password.
  const auth = process.env.CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH
  const registry = new SchemaRegistry({
    host: options.registry,
    ...(auth ? { auth: { username: auth.split(':')[0], password: auth.split(':').slice(1).join(':') } } : {})
  })
  return { kafka, registry }
}

// A TypeID (prefix_ + 26 Crockford base32 digits of a 128-bit value; the first digit 0-7):
// the services validate every id. Random here; Ctrl Plane's own ids are UUIDv7.
function typeId (prefix) {
  const alphabet = '0123456789abcdefghjkmnpqrstvwxyz'
  let value = BigInt('0x' + crypto.randomBytes(16).toString('hex'))
  let digits = ''
  for (let i = 0; i < 26; i++) {
    digits = alphabet[Number(value & 31n)] + digits
    value >>= 5n
  }
  return `${prefix}_${digits}`
}

// Avro long timestamp-micros -> RFC 3339 (avsc reads the long as a number: exact below 2^53).
function rfc3339 (micros) {
  const millis = Math.floor(Number(micros) / 1000)
  const rest = String(Number(micros) % 1000000).padStart(6, '0')
  return new Date(millis).toISOString().replace(/\.\d{3}Z$/, `.${rest}Z`)
}

async function consume (options) {
  const { kafka, registry } = clients(options)
  const count = Number(options.count || 1)
  const consumer = kafka.consumer({ groupId: options.group || `cpevents-node-${process.pid}` })
  await consumer.connect()
  await consumer.subscribe({ topic: options.topic, fromBeginning: true })
  let seen = 0
  await new Promise((resolve, reject) => {
    consumer.run({
      eachMessage: async ({ topic, partition, message }) => {
        try {
          const event = await registry.decode(message.value)
          const traceparent = message.headers && message.headers.traceparent
          process.stdout.write(JSON.stringify({
            topic,
            partition,
            offset: Number(message.offset),
            traceparent: traceparent ? traceparent.toString() : null,
            event: {
              ...event,
              payload: JSON.parse(event.payload),
              timestamp: rfc3339(event.timestamp)
            }
          }) + '\n')
          seen += 1
          if (seen >= count) resolve()
        } catch (err) {
          reject(err)
        }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
}

async function produce (options) {
  const { kafka, registry } = clients(options)
  const id = await registry.getLatestSchemaId(`${options.topic}-value`)
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: librdkafkaPartitioner
  })
  await producer.connect()
  const messages = []
  const ids = []
  for (let i = 0; i < Number(options.count || 1); i++) {
    const eventId = typeId('evt')
    ids.push(eventId)
    const event = {
      id: eventId,
      type: options.type || 'instance.created',
      tenant_id: options.tenant || 'ten_node',
      instance_id: null,
      actor_id: 'usr_node',
      payload: JSON.stringify({ from: 'node', n: i }),
      timestamp: Date.now() * 1000
    }
    const headers = options.traceparent ? { traceparent: options.traceparent } : undefined
    messages.push({ key: event.tenant_id, value: await registry.encode(id, event), headers })
  }
  const results = await producer.send({
    topic: options.topic,
    acks: -1,
    compression: CompressionTypes.LZ4,
    messages
  })
  await producer.disconnect()
  // One batch to one partition per key: base offset + index.
  const [result] = results
  ids.forEach((eventId, index) => {
    process.stdout.write(JSON.stringify({
      topic: result.topicName,
      partition: result.partition,
      offset: Number(result.baseOffset) + index,
      id: eventId
    }) + '\n')
  })
}

async function main () {
  const { command, options } = parseArgs(process.argv.slice(2))
  if (command === 'consume') return consume(options)
  if (command === 'produce') return produce(options)
  throw new Error(`unknown command ${command} (consume or produce)`)
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`)
  process.exit(1)
})
