-- PostgreSQL DDL of migrations/0004_heartbeat.sql.
CREATE TABLE heartbeat (
	owner TEXT   COLLATE "C" PRIMARY KEY,
	at    BIGINT NOT NULL
);
