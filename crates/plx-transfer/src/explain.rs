//! The one reading of an S3 SDK error, for `plx-init check`, downloads and uploads: what went
//! wrong and what to do, in one sentence, whether retrying may help, and the SDK's own detail
//! (its `Debug` dump) only in a debug log (`PLX_LOG=debug`), never in front of a user.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ErrorKind;

/// What a failed request was about: the sentence differs for a bucket as a whole (`check`)
/// and for one object of a transfer.
pub enum About<'a> {
    /// One object or listing of a transfer; its key is said beside the message.
    Object,
    /// A bucket at an endpoint, as `plx-init check` tests it.
    Bucket {
        /// The bucket.
        bucket: &'a str,
        /// Where the requests go (the endpoint, or "AWS S3 in REGION").
        endpoint: &'a str,
        /// The region the client signs for.
        region: &'a str,
    },
}

/// A failed request, explained.
#[derive(Debug, Clone)]
pub struct Explained {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Whether another try may succeed (a server error, a timeout, a broken connection).
    pub transient: bool,
    /// One sentence: what is wrong and what to do.
    pub message: String,
}

/// Explains `error`. The SDK's nested detail goes to the debug log only.
pub fn explain<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    about: &About<'_>,
) -> Explained {
    tracing::debug!(error = %DisplayErrorContext(error), "S3 request failed");
    let where_ = match about {
        About::Object => "the store",
        About::Bucket { endpoint, .. } => endpoint,
    };
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            service_error(status, service.err().code(), about)
        }
        SdkError::TimeoutError(_) => transient(format!("timed out talking to {where_}")),
        SdkError::DispatchFailure(failure) => dispatch(error, failure.is_timeout(), where_),
        SdkError::ResponseError(_) => transient(format!(
            "{where_} sent a response that could not be read: {}",
            causes(error)
        )),
        _ => Explained {
            kind: ErrorKind::Transport,
            transient: false,
            message: format!("the request could not be made: {}", causes(error)),
        },
    }
}

/// An answer from the store: 404 and 403 are final; 5xx, SlowDown, RequestTimeout and a body
/// damaged on its way to the store are worth another try.
fn service_error(status: u16, code: Option<&str>, about: &About<'_>) -> Explained {
    let text = format!("{status} {}", code.unwrap_or("")).trim().to_owned();
    let permanent = |kind, message: String| Explained {
        kind,
        transient: false,
        message,
    };
    if let About::Bucket {
        bucket,
        endpoint,
        region,
    } = about
    {
        return match (code, status) {
            (Some("InvalidAccessKeyId"), _) => permanent(
                ErrorKind::Denied,
                format!(
                    "the access key is not known to {endpoint} (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID"
                ),
            ),
            (Some("SignatureDoesNotMatch"), _) => permanent(
                ErrorKind::Denied,
                format!(
                    "{endpoint} refused the signature (SignatureDoesNotMatch): AWS_SECRET_ACCESS_KEY does not match the access key"
                ),
            ),
            (Some("NoSuchBucket"), _) | (_, 404) => permanent(
                ErrorKind::NotFound,
                format!("bucket `{bucket}` does not exist at {endpoint}"),
            ),
            (Some("AccessDenied"), _) | (_, 403) => permanent(
                ErrorKind::Denied,
                format!(
                    "access to bucket `{bucket}` denied (403): wrong keys, or the keys may not read this bucket"
                ),
            ),
            (_, 301) => permanent(
                ErrorKind::Transport,
                format!("bucket `{bucket}` is in another region than {region}: set AWS_REGION"),
            ),
            (_, 500..=599) => transient(format!("{endpoint} answered {text}")),
            _ => permanent(ErrorKind::Transport, format!("{endpoint} answered {text}")),
        };
    }
    match status {
        404 => permanent(ErrorKind::NotFound, format!("does not exist ({text})")),
        403 => permanent(ErrorKind::Denied, format!("access denied ({text})")),
        500..=599 => transient(format!("server error ({text})")),
        _ if matches!(code, Some("SlowDown" | "RequestTimeout")) => transient(text),
        // The store computed another checksum than the one sent: the bytes were damaged on the
        // way. Sent again, they arrive whole (and a store that kept the damaged object, as
        // s3s-fs does before it answers, has it replaced).
        _ if matches!(
            code,
            Some("BadDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch")
        ) =>
        {
            Explained {
                kind: ErrorKind::Corrupt,
                transient: true,
                message: format!(
                    "the store received other bytes than were sent ({text}): damaged on the way"
                ),
            }
        }
        _ => permanent(ErrorKind::Transport, format!("refused ({text})")),
    }
}

/// No answer from the store: no credentials, an untrusted certificate, nothing listening, a
/// name that does not resolve, or a connection that broke.
fn dispatch(error: &(dyn std::error::Error + 'static), timeout: bool, where_: &str) -> Explained {
    if chain(error).any(|cause| {
        cause
            .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
            .is_some()
    }) {
        return Explained {
            kind: ErrorKind::Denied,
            transient: false,
            message: "no credentials: put AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the connection's Secret (its `secret`), or give the pod a role (AWS_ROLE_ARN with a web identity token)".to_owned(),
        };
    }
    let text = causes(error);
    let lower = text.to_lowercase();
    if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("tls") && lower.contains("handshake")
    {
        return Explained {
            kind: ErrorKind::Transport,
            transient: false,
            message: format!(
                "TLS failure talking to {where_}: the server's certificate is not trusted; set AWS_CA_BUNDLE to its CA (or AWS_VERIFY_SSL=false for a test setup)"
            ),
        };
    }
    transient(if timeout {
        format!("timed out connecting to {where_}")
    } else if lower.contains("connection refused") {
        format!("nothing listens at {where_} (connection refused): check AWS_ENDPOINT_URL")
    } else if lower.contains("dns")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        format!("cannot resolve the host of {where_}: check AWS_ENDPOINT_URL")
    } else {
        format!("cannot reach {where_}: {text}")
    })
}

fn transient(message: String) -> Explained {
    Explained {
        kind: ErrorKind::Transport,
        transient: true,
        message,
    }
}

/// `error` and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |cause| cause.source())
}

/// The causes' own sentences (`Display`, never `Debug`), each said once, innermost last.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in chain(error) {
        let text = cause.to_string();
        if !text.is_empty() && !said.iter().any(|earlier| earlier.contains(&text)) {
            said.push(text);
        }
    }
    said.join(": ")
}
