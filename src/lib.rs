//! pgready: a production-readiness auditor for PostgreSQL.
//!
//! The pipeline is collect → facts → evaluate → judge → render (see `ARCHITECTURE.md`).

pub mod app;
pub mod cli;
pub mod collect;
pub mod config;
pub mod evaluate;
pub mod facts;
pub mod judge;
pub mod releases;
pub mod report;
pub mod restore_test;
pub mod rules;
pub mod runbooks;
pub mod target;
pub mod tune;
