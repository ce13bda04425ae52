//! Failure classification and the one retry loop: what an S3 or I/O error means (missing,
//! denied, transient), and how objects, parts, listings and uploads are tried again.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::{Config, ErrorKind, Event, Events, ObjectError, event::emit};

/// Why one request failed, and whether trying again may help.
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) transient: bool,
}

impl Failure {
    pub(crate) fn permanent(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            transient: false,
        }
    }

    pub(crate) fn transient(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            transient: true,
        }
    }

    /// The failure of `key` (an object, a prefix or a local path), for the caller.
    pub(crate) fn of(self, key: &str) -> ObjectError {
        ObjectError::new(self.kind, key, self.message)
    }

    /// A local file system error; a full disk or an exhausted quota is [`ErrorKind::NoSpace`],
    /// which stops the whole download rather than failing object after object.
    pub(crate) fn io(error: std::io::Error) -> Failure {
        Failure::permanent(io_kind(&error), error.to_string())
    }
}

/// What a local file system error is: a full disk or an exhausted quota is [`ErrorKind::NoSpace`].
pub(crate) fn io_kind(error: &std::io::Error) -> ErrorKind {
    match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    }
}

/// What an SDK error means for one object of a transfer ([`crate::explain`]). A 503 has been
/// told to the flow already, attempt by attempt ([`crate::flow::Busy`]).
pub(crate) fn s3_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure {
    let explained = crate::explain::explain(&error, &crate::explain::About::Object);
    Failure {
        kind: explained.kind,
        message: explained.message,
        transient: explained.transient,
    }
}

/// Runs `run` until it succeeds, fails for good, or `config.attempts` are spent, waiting the
/// backoff between tries and saying each retry in an event; also how many retries it took. One
/// loop for objects, parts, listings and uploads, so none of them gives up after the SDK's own
/// few quick attempts.
pub(crate) async fn retrying<T, F, Fut>(
    config: &Config,
    key: &str,
    events: &Events,
    mut run: F,
) -> (Result<T, Failure>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 1;
    loop {
        match run().await {
            Err(failure) if failure.transient && attempt < config.attempts => {
                emit(
                    events,
                    Event::Retry {
                        key: key.to_owned(),
                        attempt,
                        cause: failure.message.clone(),
                    },
                );
                tokio::time::sleep(backoff(config, attempt, key)).await;
                attempt += 1;
            }
            result => return (result, attempt - 1),
        }
    }
}

/// Exponential backoff with jitter derived from the key and attempt (no RNG needed, and
/// different objects still spread out).
fn backoff(config: &Config, attempt: u32, key: &str) -> std::time::Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (key, attempt, std::time::SystemTime::now()).hash(&mut hasher);
    let base = config.backoff.saturating_mul(1 << (attempt - 1).min(6));
    base + base.mul_f64((hasher.finish() % 1000) as f64 / 1000.0)
}
