//! Static upstreams (`--upstream LISTEN=TARGET,ID`): a local listener whose every connection is
//! carried over mTLS to one server that must present one identity, like Consul's upstreams or
//! ghostunnel's client mode.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use crate::config::Upstream;
use crate::io::splice;
use crate::tls::ALPN_TCP;
use crate::view::Route;

impl Outbound {
    /// Accepts on `listener` until the drain, tunnelling each connection to `upstream`.
    pub async fn serve_upstream(self: Arc<Self>, upstream: Upstream, listener: TcpListener) {
        let route = Route::Mtls {
            address: upstream.target,
            expected: vec![upstream.identity.clone()],
        };
        loop {
            let accepted = tokio::select! {
                () = self.drain.signaled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((tcp, _)) => {
                    let me = Arc::clone(&self);
                    let route = route.clone();
                    self.drain.spawn(async move { me.carry(tcp, route).await });
                }
                Err(err) => {
                    tracing::warn!(%err, listen = %upstream.listen, "upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn carry(&self, mut client: TcpStream, route: Route) {
        let _ = client.set_nodelay(true);
        let mut server = match self.connect(&route, ALPN_TCP).await {
            Ok(s) => s,
            Err(err) => {
                // Closing without a byte: the client's bytes never leave this proxy.
                tracing::warn!(%err, "upstream connection refused");
                return;
            }
        };
        if let Err(err) = splice(&mut client, &mut server).await {
            tracing::debug!(%err, "upstream stream ended");
        }
    }
}
