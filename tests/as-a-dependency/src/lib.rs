//! The README's Rust examples, as a crate that depends on shmio alone sees
//! them: each is a doc test here.

#[doc = include_str!("../../../README.md")]
pub struct Readme;
