//! Collectors: the only stage that touches the world.
pub mod postgres;
