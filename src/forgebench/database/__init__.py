"""Database benchmarks: N+1 queries against JOIN and batched IN, and connection pooling,
on an embedded SQLite file and on a PostgreSQL server reached through a DSN."""
