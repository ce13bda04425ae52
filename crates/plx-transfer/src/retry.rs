//! Failure classification and the one retry loop: what an S3 or I/O error means (missing,
//! denied, transient), and how objects, parts, listings and uploads are tried again.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::{Config, ErrorKind, Event, Events, emit};

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

    pub(crate) fn io(error: std::io::Error) -> Failure {
        Failure::permanent(ErrorKind::Io, error.to_string())
    }
}

/// What an SDK error means for the object: 404 and 403 are final, 5xx, SlowDown, timeouts and
/// broken connections are worth another try.
pub(crate) fn s3_failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Failure {
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("").to_owned();
            let text = format!("{status} {code}").trim().to_owned();
            match status {
                404 => Failure::permanent(ErrorKind::NotFound, format!("does not exist ({text})")),
                403 => Failure::permanent(ErrorKind::Denied, format!("access denied ({text})")),
                500..=599 => {
                    Failure::transient(ErrorKind::Transport, format!("server error ({text})"))
                }
                _ if code == "SlowDown" || code == "RequestTimeout" => {
                    Failure::transient(ErrorKind::Transport, text)
                }
                _ => Failure::permanent(ErrorKind::Transport, format!("refused ({text})")),
            }
        }
        _ => Failure::transient(
            ErrorKind::Transport,
            DisplayErrorContext(&error).to_string(),
        ),
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
