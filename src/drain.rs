//! Graceful drain: how a stopping node lets go of its sessions without a reconnect storm.
//!
//! Closing every socket of a node at once sends all its clients to the other nodes in the same instant (and to
//! the session store and registry with them). A drain instead closes them evenly over `server.drain_period`:
//! the period is cut into one slot per session and each session closes at a random moment of its own slot, so
//! the closes are spread (no slot holds two) and nodes draining together do not fall into step. This module
//! owns the schedule and the listener's closing; the sequence itself (readiness first, then the listener, then
//! the sessions) lives in [`crate::node`].

use std::net::TcpListener;
use std::time::Duration;

use actix::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::model::Disconnect;

/// How long `/health/ready` answers 503 ("draining") before the listener closes: long enough for a load
/// balancer polling every second to see it, so it stops sending new connections before they are refused.
/// Capped by `server.drain_period` (a node configured to close at once does not wait). Kubernetes users add a
/// `preStop` hook for their probe period (cluster/README.md).
pub const READY_NOTICE: Duration = Duration::from_secs(1);

/// How long the server's accept thread gets to act on a pause before the listener is shut under it.
pub const PAUSE_SETTLE: Duration = Duration::from_millis(100);

/// Closes falling due within this much of each other are sent together (one timer per batch, not per session).
pub const DRAIN_TICK: Duration = Duration::from_millis(20);

/// When each of `n` sessions closes, as offsets from the start of a drain lasting `period`: one slot of
/// `period / n` per session, a random moment in each, in increasing order.
pub fn schedule(n: usize, period: Duration, rng: &mut impl Rng) -> Vec<Duration> {
    if n == 0 || period.is_zero() {
        return vec![Duration::ZERO; n];
    }
    let slot = period.as_secs_f64() / n as f64;
    (0..n).map(|i| Duration::from_secs_f64(slot * (i as f64 + rng.random::<f64>()))).collect()
}

/// Sends `disconnect` to every target, spread over `period` by [`schedule`] in a random order; returns once the
/// last one is sent (about `period` later).
pub async fn close_spread(mut targets: Vec<Recipient<Disconnect>>, disconnect: Disconnect, period: Duration) {
    let due = {
        let mut rng = rand::rng();
        targets.shuffle(&mut rng);
        schedule(targets.len(), period, &mut rng)
    };
    let start = tokio::time::Instant::now();
    for (target, due) in targets.iter().zip(due) {
        let at = start + due;
        if at > tokio::time::Instant::now() + DRAIN_TICK {
            tokio::time::sleep_until(at).await;
        }
        target.do_send(disconnect.clone());
    }
}

/// Stops `listener` taking connections: new connection attempts are refused at once (a load balancer fails
/// over immediately) instead of waiting in the accept queue of a node that will never accept them. Linux
/// ends a listening socket's listen state on `shutdown(SHUT_RD)`, resetting connections still queued; the
/// socket stays open for the server that owns it. Elsewhere the call may fail: the listener then stays paused.
pub fn close_listener(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
        log::debug!("listener not shut ({e}); it stays paused until the server stops");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_gives_each_session_its_own_slot_in_increasing_order() {
        let period = Duration::from_secs(10);
        let due = schedule(100, period, &mut rand::rng());
        assert_eq!(due.len(), 100);
        for (i, d) in due.iter().enumerate() {
            let slot = period / 100;
            assert!(*d >= slot * i as u32 && *d < slot * (i as u32 + 1), "session {i} at {d:?}");
        }
    }

    #[test]
    fn schedule_is_jittered_so_two_drains_do_not_fall_into_step() {
        let period = Duration::from_secs(10);
        assert_ne!(schedule(50, period, &mut rand::rng()), schedule(50, period, &mut rand::rng()));
    }

    #[test]
    fn a_zero_period_closes_everything_at_once() {
        assert_eq!(schedule(3, Duration::ZERO, &mut rand::rng()), vec![Duration::ZERO; 3]);
        assert!(schedule(0, Duration::from_secs(1), &mut rand::rng()).is_empty());
    }

    #[test]
    fn a_closed_listener_refuses_new_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::net::TcpStream::connect(addr).expect("open before");
        close_listener(&listener);
        let refused = std::net::TcpStream::connect(addr).expect_err("refused after");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
