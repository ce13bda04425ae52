//! The value rules, written once: as checks for the validator and as ECMA-262 patterns for the
//! JSON Schemas. The conformance suite runs every case through both, so a drift between a check
//! and its pattern fails a test.

/// A connection name: a DNS-1123 label, as it becomes a volume and container name.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Longest DNS-1123 label.
pub const NAME_MAX: usize = 63;
/// A Secret or ConfigMap name: a DNS-1123 subdomain.
pub const RESOURCE_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Longest DNS-1123 subdomain.
pub const RESOURCE_NAME_MAX: usize = 253;
/// A Secret or ConfigMap key.
pub const KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// An environment variable name, as Kubernetes validates it.
pub const ENV_NAME_PATTERN: &str = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$";
/// An absolute path.
pub const ABSOLUTE_PATH_PATTERN: &str = r"^/";
/// A `defaultMode` written as an octal string.
pub const OCTAL_MODE_PATTERN: &str = r"^0o?0?[0-7]{1,3}$";
/// The largest file mode Kubernetes takes for a volume.
pub const MODE_MAX: u32 = 0o777;
/// An init entry: relative, no `..` segment, no backslash, no NUL.
pub const RELATIVE_ENTRY_PATTERN: &str = r"^(?!/)(?!([^/]*/)*\.\.(/|$))[^\\\x00]*$";
/// A custom init destination: absolute, no `..` segment, no backslash, no NUL.
pub const DESTINATION_PATTERN: &str = r"^/(?!([^/]*/)*\.\.(/|$))[^\\\x00]*$";
/// An s3 bucket URL.
pub const S3_BUCKET_PATTERN: &str = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x1f\x7f]*)?$";
/// A gcs bucket URL.
pub const GCS_BUCKET_PATTERN: &str =
    r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\x00-\x1f\x7f]*)?$";
/// A wasb container URL.
pub const WASB_BUCKET_PATTERN: &str = r"^(wasbs?://[a-z0-9][a-z0-9-]{1,61}[a-z0-9]@[^/@\x00-\x1f\x7f]+|az://[a-z0-9][a-z0-9-]{1,61}[a-z0-9])(/[^\x00-\x1f\x7f]*)?$";

pub(crate) fn is_dns_label(text: &str) -> bool {
    text.len() <= NAME_MAX && is_label(text)
}

pub(crate) fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= RESOURCE_NAME_MAX && text.split('.').all(is_label)
}

fn is_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

pub(crate) fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

pub(crate) fn is_env_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    match bytes.next() {
        Some(first) => ok(first) && !first.is_ascii_digit() && bytes.all(ok),
        None => false,
    }
}

/// Parses a `defaultMode` string: `"0400"` or `"0o400"`.
pub(crate) fn parse_octal_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").or_else(|| text.strip_prefix('0'))?;
    let digits = if digits.len() == 4 {
        digits.strip_prefix('0')?
    } else {
        digits
    };
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

/// Why a path-like entry escapes its root, if it does.
pub(crate) fn escape_reason(text: &str) -> Option<&'static str> {
    if text.contains('\0') {
        Some("contains a NUL byte")
    } else if text.contains('\\') {
        Some("contains a backslash")
    } else if text.split('/').any(|segment| segment == "..") {
        Some("has a `..` segment")
    } else {
        None
    }
}

/// Why a bucket name is not valid for an s3, gcs or wasb URL, if it is not.
pub(crate) fn bucket_name_problem(scheme: &str, rest: &str) -> Option<String> {
    let (name, max, extra): (&str, usize, &[u8]) = match scheme {
        "s3://" => (rest.split('/').next().unwrap_or(""), 63, b".-"),
        "gs://" => (rest.split('/').next().unwrap_or(""), 222, b"._-"),
        "az://" => (rest.split('/').next().unwrap_or(""), 63, b"-"),
        _ => {
            // wasb(s)://container@account.host/path
            let authority = rest.split('/').next().unwrap_or("");
            let Some((container, account)) = authority.split_once('@') else {
                return Some(format!(
                    "`{scheme}{authority}` has no account; write {scheme}<container>@<account>.blob.core.windows.net/<path>"
                ));
            };
            if account.is_empty() || account.contains('@') {
                return Some(format!("`{account}` is not a storage account host"));
            }
            (container, 63, b"-")
        }
    };
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(b);
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() {
        Some("the bucket name is empty".to_owned())
    } else if bytes.len() < 3 || bytes.len() > max {
        Some(format!(
            "bucket name `{name}` must be 3 to {max} characters long"
        ))
    } else if !bytes.iter().all(inner) || !edge(bytes.first()) || !edge(bytes.last()) {
        Some(format!(
            "bucket name `{name}` may hold only lowercase letters, digits and {}, and must start and end with a letter or digit",
            extra
                .iter()
                .map(|b| format!("`{}`", *b as char))
                .collect::<Vec<_>>()
                .join(" ")
        ))
    } else {
        None
    }
}

/// A DNS-1123 label made from `text`, for "write this instead" hints.
pub(crate) fn suggest_label(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    let out = &out[..out.len().min(NAME_MAX)];
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "s3-dataset1", "0", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("s3.secret-1"));
        assert!(!is_dns_subdomain("s3..secret"));
    }

    #[test]
    fn octal_modes() {
        assert_eq!(parse_octal_mode("0400"), Some(0o400));
        assert_eq!(parse_octal_mode("0o644"), Some(0o644));
        assert_eq!(parse_octal_mode("0"), None);
        assert_eq!(parse_octal_mode("400"), None);
        assert_eq!(parse_octal_mode("0800"), None);
        assert_eq!(parse_octal_mode("00400"), Some(0o400));
        assert_eq!(parse_octal_mode("07777"), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_reason("data/train"), None);
        assert_eq!(escape_reason("a..b/c"), None);
        assert!(escape_reason("../x").is_some());
        assert!(escape_reason("a/../../x").is_some());
        assert!(escape_reason("a\\b").is_some());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest_label("S3_Dataset 1"), "s3-dataset-1");
        assert_eq!(suggest_label("__x__"), "x");
    }
}
