//! Transparent inbound: one listener on the inbound capture port (15006) instead of one per
//! service port. Each connection redirected there is handled exactly as the per-port listener
//! of its original port would handle it (sniffing, the port's PeerAuthentication mode,
//! authorization, forwarding to the app on that port); a port the view does not serve is
//! closed, as it is in explicit mode.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::Inbound;
use crate::capture::original_dst::original_dst;
use crate::io::accept_until;

impl Inbound {
    /// Serves connections redirected to `listener` until the drain. Readiness counts every
    /// port of the view as listening, since this one listener serves them all.
    pub fn start_redirected(self: &Arc<Self>, listener: TcpListener) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut view = me.view.clone();
            loop {
                let ports = view.borrow_and_update().inbound.keys().copied().collect();
                me.listening.send_replace(ports);
                tokio::select! {
                    () = me.drain.signaled() => return,
                    changed = view.changed() => if changed.is_err() { return },
                }
            }
        });
        let own = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let me = Arc::clone(self);
        tokio::spawn(accept_until(
            listener,
            self.drain.token().clone(),
            "inbound capture",
            move |tcp, peer| {
                let port = match original_dst(&tcp) {
                    Ok(dst) if dst.port() != own => dst.port(),
                    Ok(dst) => {
                        tracing::info!(%peer, %dst, "refused: a connection to the inbound capture port itself");
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(%peer, %err, "refused: no original destination (not redirected by the capture rules)");
                        return;
                    }
                };
                let stats = me.telemetry.metrics().inbound.port(port);
                let me2 = Arc::clone(&me);
                me.drain.spawn(me2.handle(port, tcp, peer, stats));
            },
        ));
    }
}
