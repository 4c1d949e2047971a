//! What went wrong under an HTTP request, read from the error's types (never its text).
//!
//! A TLS verification failure, a refused connection and a reset all arrive as an `io::Error` somewhere in a
//! chain of hyper or client-library errors; the TLS library's own error sits inside an `io::Error` whose
//! `source()` skips it (std reports the inner error's source, not the inner error), so the walk below looks
//! inside each `io::Error` with `get_ref` as well.

use std::error::Error as StdError;
use std::io;

/// A transport fact, as far as the error's types tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Nothing listens there: no socket file, connection refused, address not available.
    NoService,
    /// The caller may not open the socket.
    PermissionDenied,
    /// The TLS handshake failed: the peer's certificate is not trusted, or it refused ours.
    Tls,
    /// The connection or an answer took too long.
    TimedOut,
    /// The connection broke: reset, aborted, closed early, or the service crashed mid-answer.
    Broken,
    /// The service answered bytes that are not what the protocol promises.
    Malformed,
    /// Anything else.
    Other,
}

/// The transport fact behind `err`, looking through its whole source chain.
pub fn transport_of(err: &(dyn StdError + 'static)) -> Transport {
    if find::<rustls::Error>(err).is_some() {
        return Transport::Tls;
    }
    if let Some(hyper) = find::<hyper::Error>(err) {
        if hyper.is_timeout() {
            return Transport::TimedOut;
        }
    }
    match find::<io::Error>(err).map(io::Error::kind) {
        Some(
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable,
        ) => Transport::NoService,
        Some(io::ErrorKind::PermissionDenied) => Transport::PermissionDenied,
        Some(io::ErrorKind::TimedOut) => Transport::TimedOut,
        Some(io::ErrorKind::InvalidData) => Transport::Malformed,
        Some(_) => Transport::Broken,
        None => match find::<hyper::Error>(err) {
            Some(e) if e.is_parse() || e.is_parse_status() => Transport::Malformed,
            Some(e) if e.is_incomplete_message() || e.is_closed() || e.is_canceled() => {
                Transport::Broken
            }
            _ => Transport::Other,
        },
    }
}

/// The first error of type `T` in `err`'s chain, including errors wrapped inside `io::Error`s.
pub fn find<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(found) = find::<T>(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_nobody_trusts_is_found_inside_the_io_error_that_carries_it() {
        // tokio-rustls reports a failed handshake as InvalidData carrying rustls's error
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, rustls);
        assert_eq!(transport_of(&io), Transport::Tls);
        // and wrapped once more, as a connector does
        let outer = io::Error::other(io);
        assert_eq!(transport_of(&outer), Transport::Tls);
    }

    #[test]
    fn io_kinds() {
        let of = |kind| transport_of(&io::Error::from(kind));
        assert_eq!(of(io::ErrorKind::ConnectionRefused), Transport::NoService);
        assert_eq!(of(io::ErrorKind::NotFound), Transport::NoService);
        assert_eq!(
            of(io::ErrorKind::PermissionDenied),
            Transport::PermissionDenied
        );
        assert_eq!(of(io::ErrorKind::TimedOut), Transport::TimedOut);
        assert_eq!(of(io::ErrorKind::ConnectionReset), Transport::Broken);
        assert_eq!(of(io::ErrorKind::InvalidData), Transport::Malformed);
    }
}
