"""Messages and how they travel, knowing nothing about sagas.

``wire/`` holds the pure formats (messages, dead letters, topics, backoff);
``transport/`` is the Kafka transport built on kafka-python; ``service.py`` is
``CommandService``, the runtime any participant service runs over its command
topics; ``errors.py`` the package's one error hierarchy.
"""
