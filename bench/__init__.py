"""jobstream's benchmark: load against the local stack, with the raw Kafka limit beside it.

`python -m bench` (or `bench/run.sh`, which takes the shared stack lock and starts the workers).
Modules: `load` (the load generator and its sections), `raw_limit` (the two-hop aiokafka pipeline),
`storage_limit` (the least database work a job needs, with a bare PyMongo client), `prefill`
(a database of a million synthetic jobs for the second run),
`procstat` (CPU and memory from /proc), `stack` (API bases, health, worker counters), `profile`
(optional py-spy), `stats` and `report` (pure: figures and the Markdown/JSON/PNG report).
"""
