//! weft's control plane. `main` is thin; this library holds the pieces:
//! - [`args`]: command line and environment;
//! - [`admin`]: the admin HTTP server (/live, /ready, /metrics) and [`metrics`]: what it exports;
//! - [`leader`]: a `coordination.k8s.io` Lease, so of several replicas only one writes;
//! - [`context`]: what every controller shares (client, namespace, event recorder);
//! - [`status`]: status writes by server-side apply under one field manager;
//! - [`controllers`]: one module per resource kind;
//! - [`identity_service`]: the HTTPS service that signs proxies' certificates (every replica serves it).
#![forbid(unsafe_code)]

pub mod admin;
pub mod args;
pub mod context;
pub mod controllers;
pub mod identity_service;
pub mod leader;
pub mod metrics;
pub mod status;
