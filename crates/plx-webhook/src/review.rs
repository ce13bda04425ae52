//! AdmissionReview v1 in, AdmissionReview v1 out: one answer for every well-formed review,
//! with every problem at once, in the message, as causes with field paths, and as warnings.

use kube::core::{
    DynamicObject, Status,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
    response::{StatusCause, StatusDetails},
};
use plx_connections::Severity;
use serde_json::Value;

use crate::check::{Code, CrossCheck, Keys, Object, Problem, review, scratch_image_commands};

/// Why a body is not a review we can answer (the HTTP status says which).
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// Not JSON, or not an AdmissionReview v1 with a request.
    #[error("not an AdmissionReview v1 request: {0}")]
    Malformed(String),
}

/// Settings of the checks.
#[derive(Clone, Copy)]
pub struct Policy<'a> {
    /// The key-name cache, when the webhook watches the cluster.
    pub keys: Option<&'a dyn Keys>,
    /// Cross-object problems are errors rather than warnings.
    pub strict: bool,
}

/// The answer to one review: the AdmissionReview to send back, and whether it lets the object in.
#[derive(Debug)]
pub struct Answer {
    /// The review to send back, with the request's uid.
    pub review: AdmissionReview<DynamicObject>,
    /// Whether the object is allowed (with warnings, maybe).
    pub allowed: bool,
}

/// The verdict on one review body.
pub fn answer(body: &[u8], policy: Policy<'_>) -> Result<Answer, Reject> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|error| Reject::Malformed(error.to_string()))?;
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return Err(Reject::Malformed(format!(
            "apiVersion `{}` kind `{}`; expected admission.k8s.io/v1 AdmissionReview",
            review.types.api_version, review.types.kind
        )));
    }
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| Reject::Malformed("the review has no request".to_owned()))?;
    let response = decide(&request, policy);
    Ok(Answer {
        allowed: response.allowed,
        review: response.into_review(),
    })
}

fn decide(request: &AdmissionRequest<DynamicObject>, policy: Policy<'_>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    // DELETE and CONNECT carry no new object; there is nothing to refuse.
    let Some(object) = &request.object else {
        return response;
    };
    let Ok(value) = serde_json::to_value(object) else {
        return response;
    };
    let object = match Object::read(&request.kind.kind, value) {
        None => return response,
        Some(Ok(object)) => object,
        // The API server sends objects it decoded; one that does not read as its kind is
        // refused, saying why, rather than let through unchecked.
        Some(Err(message)) => {
            return respond(
                response,
                &[Problem {
                    severity: Severity::Error,
                    path: String::new(),
                    code: Code::Model(plx_connections::Code::InvalidJson),
                    message,
                }],
            );
        }
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let cross = policy.keys.map(|keys| CrossCheck {
        keys,
        namespace: &namespace,
        strict: policy.strict,
    });
    let mut problems = review(&object, cross.as_ref());
    if let Object::Pod(pod) = &object {
        let images = scratch_image_commands(pod, policy.strict);
        if !images.is_empty() {
            problems.get_or_insert_with(Vec::new).extend(images);
        }
    }
    let Some(problems) = problems else {
        return response;
    };
    respond(response, &problems)
}

/// Fills the response from the problems: denied when any is an error.
pub fn respond(mut response: AdmissionResponse, problems: &[Problem]) -> AdmissionResponse {
    let warnings: Vec<String> = problems
        .iter()
        .filter(|problem| problem.severity == Severity::Warning)
        .map(line)
        .collect();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    let errors: Vec<&Problem> = problems
        .iter()
        .filter(|problem| problem.severity == Severity::Error)
        .collect();
    if errors.is_empty() {
        return response;
    }
    let message = format!(
        "{} in the connection catalog:\n{}",
        if errors.len() == 1 {
            "1 problem".to_owned()
        } else {
            format!("{} problems", errors.len())
        },
        errors
            .iter()
            .map(|problem| line(problem))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut response = response.deny(message.clone());
    response.result = Status::failure(&message, "Invalid").with_code(422);
    response.result.details = Some(StatusDetails {
        causes: errors
            .iter()
            .map(|problem| StatusCause {
                reason: problem.code.to_string(),
                message: problem.message.clone(),
                field: field_path(&problem.path),
            })
            .collect(),
        name: String::new(),
        group: String::new(),
        kind: String::new(),
        uid: String::new(),
        retry_after_seconds: 0,
    });
    response
}

fn line(problem: &Problem) -> String {
    format!("{}: {}: {}", problem.path, problem.code, problem.message)
}

/// A JSON Pointer as a Kubernetes field path: `/data/X/0/kind` → `data.X[0].kind`.
pub fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The object of a review, for callers that only need its kind (metrics, logs).
pub fn kind_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    Some(value["request"]["kind"]["kind"].as_str()?.to_owned())
}
