//! Integration tests: real sockets against nodes started on port 0. One binary, modules by topic.

mod access;
mod bad_input;
mod cluster;
mod drain;
mod fuzz_corpus;
mod health_cmd;
mod helpers;
mod history;
mod hostile;
mod inproc;
mod lb;
mod library;
mod meta;
mod metrics;
mod push;
mod redis_deploy;
mod redis_faults;
mod redis_server;
mod retention;
mod scenarios;
mod sentinel;
mod sessions;
mod transport;
mod v1;
mod v2;
mod webhooks;
