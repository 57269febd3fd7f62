"""The wire and the transport: messages, topics, the Kafka clients, the broker."""
