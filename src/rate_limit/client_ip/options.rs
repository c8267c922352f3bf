//! The client-IP options of every builder that keys by client IP (the
//! rate limiter, overload protection, idempotency): parsed, checked and
//! documented once. A builder holds a [`ClientIpOptions`], offers its
//! setters with [`client_ip_setters!`], and turns it into a
//! [`ClientIpConfig`] when it is built.

use std::net::IpAddr;
use std::sync::Arc;

use http::Extensions;

use super::{ClientIpConfig, ForwardedHeader};
use crate::ConfigError;

/// See the module docs.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientIpOptions {
    config: ClientIpConfig,
    /// A `trusted_proxies` entry that did not parse, reported at build.
    bad_proxy: Option<ConfigError>,
}

impl ClientIpOptions {
    pub(crate) fn trusted_proxies<I, S>(&mut self, proxies: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match ClientIpConfig::parse_trusted(proxies) {
            Ok(trusted) => {
                self.config.trusted = trusted;
                self.bad_proxy = None;
            }
            Err(error) => self.bad_proxy = Some(error),
        }
    }

    pub(crate) fn forwarded_header(&mut self, header: ForwardedHeader) {
        self.config.header = header;
    }

    pub(crate) fn ipv6_prefix(&mut self, bits: u8) {
        self.config.ipv6_prefix = bits;
    }

    pub(crate) fn peer_addr_with(
        &mut self,
        hook: impl Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    ) {
        self.config.peer_hook = Some(Arc::new(hook));
    }

    /// The configuration, or the first bad option, naming it.
    pub(crate) fn config(&self) -> Result<ClientIpConfig, ConfigError> {
        if let Some(error) = &self.bad_proxy {
            return Err(error.clone());
        }
        if self.config.ipv6_prefix > 128 {
            return Err(ConfigError::new("ipv6_prefix", "must be at most 128"));
        }
        Ok(self.config.clone())
    }
}

/// The public client-IP setters of a builder whose field `$field` is a
/// [`ClientIpOptions`].
macro_rules! client_ip_setters {
    ($field:ident) => {
        /// Proxies (CIDR networks or addresses) whose forwarding headers
        /// are believed when finding the client IP. Default: none, the TCP
        /// peer is the client. A bad entry fails `build`, naming
        /// `trusted_proxies`.
        pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: AsRef<str>,
        {
            self.$field.trusted_proxies(proxies);
            self
        }

        /// Which header trusted proxies write (default `X-Forwarded-For`).
        pub fn forwarded_header(mut self, header: $crate::rate_limit::ForwardedHeader) -> Self {
            self.$field.forwarded_header(header);
            self
        }

        /// How many leading bits of an IPv6 address make one client
        /// (default 64; 128 keys each address alone; over 128 fails
        /// `build`).
        pub fn ipv6_prefix(mut self, bits: u8) -> Self {
            self.$field.ipv6_prefix(bits);
            self
        }

        /// Reads the TCP peer address from the request extensions with
        /// `hook` when no [`PeerAddr`](crate::rate_limit::PeerAddr) is
        /// there (tonic's `TcpConnectInfo`, your own type...).
        pub fn peer_addr_with(
            mut self,
            hook: impl Fn(&http::Extensions) -> Option<std::net::IpAddr> + Send + Sync + 'static,
        ) -> Self {
            self.$field.peer_addr_with(hook);
            self
        }
    };
}
pub(crate) use client_ip_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_name_their_field() {
        let mut options = ClientIpOptions::default();
        options.trusted_proxies(["10.0.0.0/8", "not a network"]);
        assert_eq!(options.config().unwrap_err().field(), "trusted_proxies");
        // A later, valid list replaces the bad one.
        options.trusted_proxies(["10.0.0.0/8"]);
        assert_eq!(options.config().unwrap().trusted.len(), 1);
        options.ipv6_prefix(129);
        assert_eq!(options.config().unwrap_err().field(), "ipv6_prefix");
        options.ipv6_prefix(128);
        assert_eq!(options.config().unwrap().ipv6_prefix, 128);
    }
}
