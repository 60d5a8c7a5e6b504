//! An accepted WebSocket's task: its input stream, its output loop, and how the socket is closed.

use super::*;

/// Runs an accepted WebSocket until the actor stops and the socket is closed. `leftover` is what the HTTP parser
/// had read past the request head (a client may send its first frame without waiting for the 101).
pub(super) async fn run(io: TcpStream, leftover: Bytes, accept: Accept, write_timeout: Duration, _open: Open) {
    let io = Rc::new(io);
    let incoming = Incoming { io: io.clone(), leftover: Some(leftover).filter(|b| !b.is_empty()), done: false };
    let mut stalled = false;
    let verdict = accept.verdict.clone();
    {
        let mut output = Output::new(io.clone(), (accept.start)(incoming), accept.outbox);
        while let Some(bytes) = output.next().await {
            let written = match bytes {
                // Boxed: the connection's own frames are few, and the write's timer and readiness wait would
                // otherwise sit in every idle socket's task.
                Ok(bytes) => Box::pin(output.write(&bytes, write_timeout)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                // Dropping `output` stops the actor (its `stopping` runs): the socket is gone or useless.
                stalled = e.kind() == io::ErrorKind::TimedOut;
                verdict.0.write_stalled.set(stalled);
                if stalled {
                    log::info!("WebSocket closed: no write progress for {write_timeout:?} (slow consumer)");
                } else {
                    log::debug!("WebSocket write failed: {e}");
                }
                break;
            }
        }
    }
    // The actor and its `Incoming` are gone with `output`, so this is the last reference.
    if let Ok(io) = Rc::try_unwrap(io) {
        if stalled {
            // Not even a close frame fits: reset the connection, so the kernel drops what it still holds for a
            // client that does not read (a normal close would keep trying to deliver it).
            // A zero linger never blocks (tokio deprecates `set_linger` for the non-zero, blocking case).
            #[allow(deprecated)]
            let _ = io.set_linger(Some(Duration::ZERO));
            drop(io);
        } else if verdict.get().is_some() {
            Box::pin(refuse_close(io)).await;
        } else {
            Box::pin(linger_close(io)).await;
        }
    }
}

/// Closes a socket whose input broke a rule without reading another byte: our side is shut (the close frame
/// goes out first), the peer gets `CLOSE_LINGER` to read it, then the connection is dropped. What the peer sends
/// meanwhile waits in the kernel's bounded receive buffer, never in ours.
async fn refuse_close(mut io: TcpStream) {
    if io.shutdown().await.is_ok() {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
}

/// Shuts our side down, then waits (bounded) for the peer to close its side, discarding what it still sends.
pub(super) async fn linger_close(mut io: TcpStream) {
    if io.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 512];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

/// The socket's incoming bytes, as the stream `WebsocketContext` decodes: first what the HTTP parser had already
/// read, then whatever the socket has, read through the worker's scratch buffer.
pub(crate) struct Incoming {
    io: Rc<TcpStream>,
    leftover: Option<Bytes>,
    done: bool,
}

impl Stream for Incoming {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(bytes) = this.leftover.take() {
            return Poll::Ready(Some(Ok(bytes)));
        }
        while !this.done {
            if let Err(e) = ready!(this.io.poll_read_ready(cx)) {
                this.done = true;
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            let read = SCRATCH
                .with_borrow_mut(|scratch| this.io.try_read(scratch).map(|n| Bytes::copy_from_slice(&scratch[..n])));
            match read {
                Ok(bytes) if bytes.is_empty() => this.done = true,
                Ok(bytes) => return Poll::Ready(Some(Ok(bytes))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
        Poll::Ready(None)
    }
}
