//! The cluster: what joins nodes through Redis.
//!
//! [`backplane`] carries publications and control messages between nodes; [`registry`] records who is
//! connected where; [`envelope`] is their wire format and [`keys`] names every Redis key and channel;
//! [`redis_conn`] opens every Redis connection (URL, TLS, start-up check, masked URL for messages), including
//! the session store's. Each has a
//! single-node (memory) form used in embedded mode, so the rest of the code does not know whether it runs alone.
//! This module must not be imported by `wamp/`.

pub mod backplane;
pub mod envelope;
pub mod keys;
pub mod redis_conn;
pub mod registry;
