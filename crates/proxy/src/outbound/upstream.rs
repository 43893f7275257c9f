//! Static upstreams (`--upstream LISTEN=TARGET,ID`): a local listener whose every connection is
//! carried over mTLS to one server that must present one identity, like Consul's upstreams or
//! ghostunnel's client mode.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use crate::config::Upstream;
use crate::io::{accept_until, splice};
use crate::tls::ALPN_TCP;
use crate::view::Route;

impl Outbound {
    /// Accepts on `listener` until the drain, tunnelling each connection to `upstream`.
    pub async fn serve_upstream(self: Arc<Self>, upstream: Upstream, listener: TcpListener) {
        let route = Route::Mtls {
            address: upstream.target,
            expected: vec![upstream.identity.clone()],
        };
        let me = Arc::clone(&self);
        accept_until(
            listener,
            self.drain.token().clone(),
            "upstream",
            move |tcp, _| {
                let me2 = Arc::clone(&me);
                me.drain.spawn(me2.carry(tcp, route.clone()));
            },
        )
        .await;
    }

    async fn carry(self: Arc<Self>, mut client: TcpStream, route: Route) {
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
