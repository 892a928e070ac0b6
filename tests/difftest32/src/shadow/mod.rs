//! The parts of `hv::shadow` the case generator needs, compiled into the image from the
//! hypervisor's own source files (no copy: the host checker uses the same files through the
//! `hv` crate).
#![allow(dead_code, clippy::all)]

#[path = "../../../../src/shadow/desc.rs"]
pub mod desc;
#[path = "../../../../src/shadow/difftest.rs"]
pub mod difftest;
#[path = "../../../../src/shadow/walk.rs"]
pub mod walk;
