//! Host-name resolution for the registry client, so that a name that does not resolve is a typed fact.
//!
//! reqwest's own resolver reports a failed lookup as a connect error whose only trace of the cause is the text
//! "dns error"; a typo in a registry's name then looked like a network outage and was retried. This resolver
//! does the same lookup (the system's, on a blocking thread) and wraps its failure in [`UnknownHost`], which
//! [`crate::classify`] finds in the error chain by type.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The system resolver, failing with [`UnknownHost`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            // port 0: reqwest puts the URL's port on each address it gets back
            let looked_up: io::Result<Vec<SocketAddr>> =
                tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map(Iterator::collect);
            match looked_up {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(source) => Err(Box::new(UnknownHost { host, source }) as _),
            }
        })
    }
}

/// A registry host name the system cannot resolve.
#[derive(Debug)]
pub(crate) struct UnknownHost {
    pub(crate) host: String,
    source: io::Error,
}

impl fmt::Display for UnknownHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve {}: {}", self.host, self.source)
    }
}

impl std::error::Error for UnknownHost {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
