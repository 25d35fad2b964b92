-- One row per process that proves, every health probe, that the database takes a write.
CREATE TABLE heartbeat (
    owner TEXT PRIMARY KEY,
    at    INTEGER NOT NULL
) STRICT;
