//! Where a redirected connection was going: `SO_ORIGINAL_DST` (IPv4) and
//! `IP6T_SO_ORIGINAL_DST` (IPv6), which netfilter's REDIRECT records for the accepted socket.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

/// The destination the client connected to before a REDIRECT rule sent it here. For a
/// connection that was not redirected this is its local address; an error when the socket has
/// no netfilter record (e.g. no connection tracking in this namespace).
pub fn original_dst(tcp: &TcpStream) -> io::Result<SocketAddr> {
    let local = tcp.local_addr()?;
    let to_io = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    match local {
        SocketAddr::V4(_) => {
            let raw = getsockopt(tcp, sockopt::OriginalDst).map_err(to_io)?;
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
                u16::from_be(raw.sin_port),
            )))
        }
        SocketAddr::V6(_) => {
            let raw = getsockopt(tcp, sockopt::Ip6tOriginalDst).map_err(to_io)?;
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(raw.sin6_addr.s6_addr),
                u16::from_be(raw.sin6_port),
                raw.sin6_flowinfo,
                raw.sin6_scope_id,
            )))
        }
    }
}
