//! The Redis implementations of the cluster's seams: the pub/sub [`backplane`], the [`registry`] (with its Lua
//! scripts in `lua/`), the key and channel schema ([`keys`]) and the one place that opens Redis connections
//! ([`conn`]: URL, TLS, the start-up check, the masked URL for messages), also used for the session store; the
//! connections themselves ([`connection`]: one server, a Sentinel's master or a Cluster, alike) and their pools
//! ([`pool`]); and [`sentinel`], which follows a Sentinel-managed master through failovers.

pub mod backplane;
pub mod conn;
pub mod connection;
pub mod keys;
pub mod pool;
pub mod registry;
pub mod sentinel;
