// Command cpevents-go produces and consumes Ctrl Plane events from Go, with confluent-kafka-go
// and its Schema Registry Avro serde: the same wire format (0x00, schema id, Avro binary) and
// the same subject (<topic>-value) as the Python side.
//
//	cpevents-go produce -bootstrap 127.0.0.1:9092 -registry http://127.0.0.1:8081 \
//	    -topic ctrlplane.events.instance -schema ../../../schemas/avro/event.avsc < event.json
//	cpevents-go consume -bootstrap 127.0.0.1:9092 -registry http://127.0.0.1:8081 \
//	    -topic ctrlplane.events.instance -partition 0 -offset 12
//
// produce reads one event in Ctrl Plane's JSON form on stdin, registers the shared event.avsc
// under the topic's subject (a no-op when it is already there), writes the event as Avro keyed
// by tenant_id, and prints {"partition":..,"offset":..} then the event as JSON, one per line.
// consume reads the record at partition/offset, decodes it and prints the event as JSON.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"
)

// Event is Ctrl Plane's event, as its Go services marshal it to JSON.
type Event struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	TenantID   string         `json:"tenant_id"`
	InstanceID string         `json:"instance_id,omitempty"`
	ActorID    string         `json:"actor_id,omitempty"`
	Payload    map[string]any `json:"payload,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
}

// avroEvent is the Avro record of schemas/avro/event.avsc: optional fields are unions with
// null, the payload is its JSON object as text, the timestamp is timestamp-micros.
type avroEvent struct {
	ID         string    `avro:"id"`
	Type       string    `avro:"type"`
	TenantID   string    `avro:"tenant_id"`
	InstanceID *string   `avro:"instance_id"`
	ActorID    *string   `avro:"actor_id"`
	Payload    string    `avro:"payload"`
	Timestamp  time.Time `avro:"timestamp"`
}

func optional(value string) *string {
	if value == "" {
		return nil
	}
	return &value
}

func toAvro(event Event) (avroEvent, error) {
	payload := event.Payload
	if payload == nil {
		payload = map[string]any{}
	}
	text, err := json.Marshal(payload)
	if err != nil {
		return avroEvent{}, fmt.Errorf("payload: %w", err)
	}
	return avroEvent{
		ID:         event.ID,
		Type:       event.Type,
		TenantID:   event.TenantID,
		InstanceID: optional(event.InstanceID),
		ActorID:    optional(event.ActorID),
		Payload:    string(text),
		Timestamp:  event.Timestamp.UTC(),
	}, nil
}

func fromAvro(record avroEvent) (Event, error) {
	event := Event{
		ID:        record.ID,
		Type:      record.Type,
		TenantID:  record.TenantID,
		Timestamp: record.Timestamp.UTC(),
	}
	if record.InstanceID != nil {
		event.InstanceID = *record.InstanceID
	}
	if record.ActorID != nil {
		event.ActorID = *record.ActorID
	}
	if err := json.Unmarshal([]byte(record.Payload), &event.Payload); err != nil {
		return Event{}, fmt.Errorf("payload is not a JSON object: %w", err)
	}
	if len(event.Payload) == 0 {
		event.Payload = nil
	}
	return event, nil
}

type options struct {
	bootstrap, registry, topic, schema string
	partition                          int
	offset                             int64
	timeout                            time.Duration
}

func parse(command string, args []string) (options, error) {
	var opts options
	flags := flag.NewFlagSet(command, flag.ContinueOnError)
	flags.StringVar(&opts.bootstrap, "bootstrap", "127.0.0.1:9092", "Kafka bootstrap servers")
	flags.StringVar(&opts.registry, "registry", "http://127.0.0.1:8081", "schema registry URL")
	flags.StringVar(&opts.topic, "topic", "ctrlplane.events.instance", "topic")
	flags.StringVar(&opts.schema, "schema", "../../../schemas/avro/event.avsc", "event.avsc (produce)")
	flags.IntVar(&opts.partition, "partition", 0, "partition to read (consume)")
	flags.Int64Var(&opts.offset, "offset", 0, "offset to read (consume)")
	flags.DurationVar(&opts.timeout, "timeout", 30*time.Second, "how long to wait for Kafka")
	return opts, flags.Parse(args)
}

func registryClient(url string) (schemaregistry.Client, error) {
	return schemaregistry.NewClient(schemaregistry.NewConfig(url))
}

func produce(opts options) error {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var event Event
	if err := json.Unmarshal(input, &event); err != nil {
		return fmt.Errorf("stdin is not an event in JSON form: %w", err)
	}
	schemaText, err := os.ReadFile(opts.schema)
	if err != nil {
		return err
	}
	client, err := registryClient(opts.registry)
	if err != nil {
		return err
	}
	subject := opts.topic + "-value"
	if _, err := client.Register(subject, schemaregistry.SchemaInfo{Schema: string(schemaText)}, false); err != nil {
		return fmt.Errorf("registering %s: %w", subject, err)
	}
	config := avrov2.NewSerializerConfig()
	config.AutoRegisterSchemas = false
	config.UseLatestVersion = true // the schema just registered, not one derived from the struct
	serializer, err := avrov2.NewSerializer(client, serde.ValueSerde, config)
	if err != nil {
		return err
	}
	record, err := toAvro(event)
	if err != nil {
		return err
	}
	value, err := serializer.Serialize(opts.topic, &record)
	if err != nil {
		return fmt.Errorf("serializing: %w", err)
	}

	producer, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  opts.bootstrap,
		"acks":               "all",
		"enable.idempotence": true,
	})
	if err != nil {
		return err
	}
	defer producer.Close()
	delivered := make(chan kafka.Event, 1)
	err = producer.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &opts.topic, Partition: kafka.PartitionAny},
		Key:            []byte(event.TenantID),
		Value:          value,
	}, delivered)
	if err != nil {
		return err
	}
	var report *kafka.Message
	select {
	case result := <-delivered:
		report = result.(*kafka.Message)
	case <-time.After(opts.timeout):
		return errors.New("no delivery report in time")
	}
	if report.TopicPartition.Error != nil {
		return report.TopicPartition.Error
	}
	// Line 1: where the record went; line 2: the event as Ctrl Plane's Go code marshals it.
	position, err := json.Marshal(map[string]any{
		"partition": report.TopicPartition.Partition,
		"offset":    int64(report.TopicPartition.Offset),
	})
	if err != nil {
		return err
	}
	return printEvent(position, event)
}

func printEvent(first []byte, event Event) error {
	text, err := json.Marshal(event)
	if err != nil {
		return err
	}
	if first != nil {
		fmt.Println(string(first))
	}
	fmt.Println(string(text))
	return nil
}

func consume(opts options) error {
	client, err := registryClient(opts.registry)
	if err != nil {
		return err
	}
	deserializer, err := avrov2.NewDeserializer(client, serde.ValueSerde, avrov2.NewDeserializerConfig())
	if err != nil {
		return err
	}
	consumer, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  opts.bootstrap,
		"group.id":           "cpevents-go-example",
		"enable.auto.commit": false,
		"isolation.level":    "read_committed",
	})
	if err != nil {
		return err
	}
	defer consumer.Close()
	partition := kafka.TopicPartition{
		Topic: &opts.topic, Partition: int32(opts.partition), Offset: kafka.Offset(opts.offset),
	}
	if err := consumer.Assign([]kafka.TopicPartition{partition}); err != nil {
		return err
	}
	message, err := consumer.ReadMessage(opts.timeout)
	if err != nil {
		return err
	}
	var record avroEvent
	if err := deserializer.DeserializeInto(opts.topic, message.Value, &record); err != nil {
		return fmt.Errorf("decoding %v: %w", message.TopicPartition, err)
	}
	event, err := fromAvro(record)
	if err != nil {
		return err
	}
	return printEvent(nil, event)
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "produce" && os.Args[1] != "consume") {
		fmt.Fprintln(os.Stderr, "usage: cpevents-go produce|consume [flags]")
		os.Exit(2)
	}
	opts, err := parse(os.Args[1], os.Args[2:])
	if err == nil {
		if os.Args[1] == "produce" {
			err = produce(opts)
		} else {
			err = consume(opts)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
