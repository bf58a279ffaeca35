//! The daemon's decisions: its settings, its record, and when to wake for what.

pub mod options;
pub mod record;
pub mod schedule;
