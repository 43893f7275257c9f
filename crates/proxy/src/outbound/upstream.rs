//! Static upstreams (`--upstream LISTEN=TARGET,ID`): a local listener whose every connection is
//! carried over mTLS to one server that must present one identity, like Consul's upstreams or
//! ghostunnel's client mode.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use crate::access_log::Direction;
use crate::config::Upstream;
use crate::io::accept_until;
use crate::telemetry::{Metered, Started, TcpRecord};
use crate::tls::ALPN_TCP;
use crate::view::Route;
use crate::view::policy::DEFAULT_TCP_IDLE;

impl Outbound {
    /// Accepts on `listener` until the drain, tunnelling each connection to `upstream`.
    pub async fn serve_upstream(self: Arc<Self>, upstream: Upstream, listener: TcpListener) {
        let route = Route::Mtls {
            address: upstream.target.into(),
            expected: vec![upstream.identity.clone()],
        };
        let me = Arc::clone(&self);
        accept_until(
            listener,
            self.drain.token().clone(),
            "upstream",
            move |tcp, peer| {
                let me2 = Arc::clone(&me);
                me.drain.spawn(me2.carry(tcp, peer, route.clone()));
            },
        )
        .await;
    }

    async fn carry(self: Arc<Self>, client: TcpStream, peer: SocketAddr, route: Route) {
        let started = Started::now();
        let local = client.local_addr().ok();
        let mut server = match self.connect(&route, ALPN_TCP).await {
            Ok(s) => s,
            Err(err) => {
                // Closing without a byte: the client's bytes never leave this proxy.
                tracing::warn!(%err, "upstream connection refused");
                let record = TcpRecord::open(
                    &self.telemetry,
                    self.unreached(None),
                    Direction::Outbound,
                    started,
                    local,
                    Some(peer),
                );
                record.close(0, 0, "UF");
                return;
            }
        };
        let link = self.link(None, &route, &server, false);
        let record = TcpRecord::open(
            &self.telemetry,
            link,
            Direction::Outbound,
            started,
            local,
            Some(peer),
        );
        let mut client = Metered::new(client, record);
        // No DestinationRule applies to a static upstream: Istio's default idle timeout.
        self.carry_to(&mut client, &mut server, &route, Some(DEFAULT_TCP_IDLE))
            .await;
    }
}
