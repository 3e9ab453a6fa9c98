//! PostgreSQL collector (in progress).
