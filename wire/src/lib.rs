//! Wire protocols shared by weft's operator and proxy. Plain data and pure functions only:
//! neither Kubernetes nor I/O, so the proxy can depend on it and stay small.
#![forbid(unsafe_code)]

pub mod identity;
