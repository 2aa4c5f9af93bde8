//! The fault suite: real binaries against real servers, each case driving the tool into a fault
//! (a kill at a bad moment, two runs at once, a forged or half-written backup) and asserting
//! that nothing was lost and nothing half-done became visible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

mod concurrent;
mod config;
mod disk_full;
mod forged;
mod killed_backup;
mod killed_reencrypt;
mod killed_restore;
mod postmaster;
mod redis_faults;
mod s3;
mod secrets;
