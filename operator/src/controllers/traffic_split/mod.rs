//! Placeholder: filled in by its owner.
use crate::context::Context;

pub async fn run(_ctx: Context) {}
