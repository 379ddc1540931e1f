"""jobstream: a distributed job system of mathematical operations over Kafka, Faust and MongoDB."""

__version__ = "0.1.0"
