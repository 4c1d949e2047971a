//! The retry layer: wraps one registry exchange from outside and retries it while it fails temporarily.
//!
//! Only failures whose status is temporary ([`Error::is_temporary`]: connection errors, timeouts, 429, 5xx)
//! are retried, with exponential
//! backoff and jitter, waiting at least as long as a `Retry-After` header asked. When the attempts run out the
//! error says how many there were and what the last one died of.

use std::future::Future;
use std::time::Duration;

use berth_core::{Error, ErrorKind};

use crate::client::RegistryClient;

/// How often and how patiently a temporarily failing registry request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; each later one doubles it (plus jitter).
    pub base_delay: Duration,
    /// No single wait is longer than this, not even one a `Retry-After` header asks for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms base delay, waits capped at 30 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once and never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): `base * 2^(attempt-1)`, jittered down by up
    /// to half so that many clients failing together do not retry in lockstep, and at least `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let half = exp / 2;
        let jitter = half.mul_f64(fastrand::f64());
        let backoff = half + jitter;
        backoff
            .max(retry_after.unwrap_or_default())
            .min(self.max_delay)
    }
}

/// One failed attempt: the error, and how long the server asked us to wait before the next one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

/// Runs `attempt` until it succeeds, fails in a way that is not temporary ([`Error::is_temporary`]), or `policy`
/// runs out.
pub(crate) async fn with_retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let max = policy.max_attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        let failure = match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        if !failure.error.is_temporary() {
            return Err(failure.error);
        }
        if n >= max {
            return Err(gave_up(failure.error, n));
        }
        tokio::time::sleep(policy.delay(n, failure.retry_after)).await;
    }
}

/// When a caller that can start a transfer over (read its data afresh) tries again: while it fails temporarily,
/// as often as the policy allows, and once after [`ErrorKind::Unauthorized`]. The client renews a token on a 401
/// only for requests it can send again itself; a token that died while a streamed body was sent (a registry may
/// end one before the lifetime it gave) fails the transfer, and the next try's first request gets the registry's
/// challenge and a fresh token. Credentials the registry refuses are refused again there, and that is final.
#[derive(Debug, Clone)]
pub struct Again {
    policy: RetryPolicy,
    attempt: u32,
    renewed: bool,
}

impl Again {
    /// Before the first try.
    pub fn new(policy: RetryPolicy) -> Self {
        Again {
            policy,
            attempt: 1,
            renewed: false,
        }
    }

    /// After a try failed with `error`: how long to wait before the next one, or `None` when `error` is final.
    pub fn after(&mut self, error: &Error) -> Option<Duration> {
        if error.is_temporary() && self.attempt < self.policy.max_attempts.max(1) {
            let wait = self.policy.delay(self.attempt, None);
            self.attempt += 1;
            return Some(wait);
        }
        if error.kind() == ErrorKind::Unauthorized && !self.renewed {
            self.renewed = true;
            return Some(Duration::ZERO);
        }
        None
    }
}

impl RegistryClient {
    /// Runs `attempt`, a transfer that starts over from its beginning on each call, again as [`Again`] says.
    pub async fn again<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut again = Again::new(self.options().retry);
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            match again.after(&error) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            }
        }
    }
}

/// The final error after `attempts` temporary failures: same kind, operation and hint, the count in front,
/// and [`berth_core::ErrorStatus::Persistent`].
fn gave_up(last: Error, attempts: u32) -> Error {
    let plural = if attempts == 1 { "" } else { "s" };
    let mut error = Error::new(
        last.kind(),
        format!(
            "gave up after {attempts} attempt{plural}: {}",
            last.message()
        ),
    );
    if let Some(engine) = last.engine() {
        error = error.with_engine(engine.to_string());
    }
    if let Some(op) = last.operation() {
        error = error.with_operation(op.to_string());
    }
    if let Some(hint) = last.hint() {
        error = error.with_hint(hint.to_string());
    }
    error.persisted().with_source(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double_with_jitter_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        for _ in 0..50 {
            let d1 = policy.delay(1, None);
            assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
            let d3 = policy.delay(3, None);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(300))),
            policy.max_delay
        );
        assert!(policy.delay(60, None) <= policy.max_delay);
    }

    #[tokio::test]
    async fn retries_only_temporary_failures_and_counts_attempts() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let calls = AtomicU32::new(0);
        let result: Result<(), Error> = with_retry(&policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Unavailable, "HTTP 503").into())
        })
        .await;
        let err = result.expect_err("always fails");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("4 attempts"), "{err}");
        assert!(err.message().contains("HTTP 503"), "{err}");

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), Error> = with_retry(&policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Unauthorized, "no").into())
        })
        .await;
        assert_eq!(result.expect_err("fails").kind(), ErrorKind::Unauthorized);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_transfer_starts_over_while_temporary_and_once_after_unauthorized() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let temporary = Error::new(ErrorKind::Unavailable, "HTTP 503");
        let refused = Error::new(ErrorKind::Unauthorized, "HTTP 401");
        let mut again = Again::new(policy);
        assert!(
            again.after(&refused).is_some(),
            "a token that died is renewed once"
        );
        for _ in 1..policy.max_attempts {
            assert!(again.after(&temporary).is_some());
        }
        assert!(
            again.after(&temporary).is_none(),
            "the policy's attempts are spent"
        );
        assert!(again.after(&refused).is_none(), "refused twice is final");
        let mut again = Again::new(policy);
        assert!(again
            .after(&Error::new(ErrorKind::NotFound, "HTTP 404"))
            .is_none());
        assert!(again.after(&refused).is_some());
    }
}
