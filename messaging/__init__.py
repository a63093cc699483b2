"""RabbitMQ topology and delivery of messages to participants."""
