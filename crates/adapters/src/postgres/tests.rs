//! PostgreSQL-specific behaviour the shared conformance suite cannot see.
