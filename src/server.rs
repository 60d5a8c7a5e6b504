//! The ready-made server: a [`Switchboard`] behind actix-web on its own listener, with accepted WebSockets
//! running directly on their sockets (see `transport`), and the graceful shutdown that drains it on SIGTERM
//! (see [`crate::drain`]). This module is the top of the crate: nothing imports it but `main` and users.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};

use crate::config::Settings;
use crate::node::{StartError, Switchboard};
use crate::services::wait_until;
use crate::transport::{OpenSockets, ServerOptions};

/// The ready-made server: a [`Switchboard`] behind actix-web, with accepted WebSockets running directly on their
/// sockets (no HTTP/1 dispatcher buffers per connection; see the `transport` module).
pub struct Application {
    port: u16,
    server: Server,
    node: Switchboard,
    sockets: OpenSockets,
    /// A second handle on the listening socket, to refuse connections the moment a drain closes it.
    listener: Option<TcpListener>,
}

impl Application {
    /// Builds a node with no application handlers from `settings` and binds it.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Application::serve(Switchboard::builder(settings).build().await?)
    }

    /// Binds the configured address for an already built node.
    pub fn serve(node: Switchboard) -> Result<Application, StartError> {
        let settings = node.settings();
        let addr = settings.bind_addr()?;
        let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind { addr: addr.to_string(), source })?;
        let port = listener.local_addr().map_err(|source| StartError::Bind { addr: addr.to_string(), source })?.port();
        // A duplicate of the descriptor: the server owns the listener, the drain shuts it (see `drain`).
        let own = listener.try_clone().map_err(|e| log::warn!("no handle to close the listener on drain: {e}")).ok();
        let options = ServerOptions {
            workers: settings.server.workers,
            shutdown_timeout: settings.server.shutdown_timeout,
            write_timeout: settings.websocket.write_timeout,
        };
        let (server, sockets) = crate::transport::server(listener, options, node.configure())
            .map_err(|source| StartError::Bind { addr: addr.to_string(), source })?;
        let store = node.sessions().store().kind();
        let mode = if node.is_cluster() { "cluster" } else { "embedded" };
        log::info!("switchboard {} listening on {}:{port} ({mode} mode, sessions: {store})", node.node_id(), addr.ip());
        Ok(Application { port, server, node, sockets, listener: own })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node handle.
    pub fn node(&self) -> &Switchboard {
        &self.node
    }

    /// A handle to stop the HTTP server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped through [`handle`](Self::handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Serves until SIGTERM or SIGINT, then drains (see [`crate::drain`]): `/health/ready` answers 503
    /// `"draining"` for [`READY_NOTICE`](crate::drain::READY_NOTICE) (at most `server.drain_period`), the
    /// listener closes (new connections are refused), the sessions get GOODBYE `wamp.close.system_shutdown`
    /// and close 1001 spread over `server.drain_period`, the last sockets get `server.shutdown_timeout` to
    /// finish closing, the node leaves the registry, and the server stops.
    pub async fn run_with_graceful_shutdown(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let node = self.node.clone();
        let server = &node.settings().server;
        let (period, timeout) = (server.drain_period, server.shutdown_timeout);
        let sockets = self.sockets.clone();
        let listener = self.listener;
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            log::info!("shutdown requested: draining over {period:?}");
            node.start_draining();
            actix_web::rt::time::sleep(crate::drain::READY_NOTICE.min(period)).await;
            handle.pause().await;
            if let Some(listener) = &listener {
                // The accept thread acts on the pause after it is acknowledged; shutting the socket first would
                // make it fail an accept (and log errors) instead of leaving the socket alone.
                actix_web::rt::time::sleep(crate::drain::PAUSE_SETTLE).await;
                crate::drain::close_listener(listener);
            }
            log::info!("draining: listener closed, no new connections");
            node.drain(period, timeout).await;
            // Closed sessions still flush their Close frame and wait briefly for the client's.
            wait_until(Instant::now() + timeout, || sockets.count() == 0).await;
            node.deregister().await;
            handle.stop(true).await;
        });
        self.server.await
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
