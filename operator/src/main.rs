//! Placeholder: filled in by the identity helper.
fn main() {}
