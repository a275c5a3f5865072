//! What a gateway token holder may ask of the upstream: the methods provider APIs use, and
//! paths that stay under the credential's base URL. Both are checked before the token is, so a
//! refused request costs no lookup and never leaves the gateway.

use axum::http::Method;
use percent_encoding::percent_decode;

/// The methods provider APIs use. TRACE would have an upstream echo the request (key and all)
/// back to the client, CONNECT asks it to open a tunnel, and the rest (`PROPFIND`, made-up
/// ones) are not part of any provider's API.
pub(crate) const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// The `Allow` header of a 405.
pub(crate) const ALLOW: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

/// Whether requests with `method` are forwarded.
pub(crate) fn method_allowed(method: &Method) -> bool {
    METHODS.contains(method)
}

/// Whether `text` (a path, a query parameter) holds `token`, as it is or under up to
/// [`DECODE_DEPTH`] rounds of percent-decoding (`+` read as a space too).
pub(crate) fn holds(text: &str, token: &str) -> bool {
    // Decoding only shortens: a text shorter than the token cannot hold it in any form.
    if text.len() < token.len() {
        return false;
    }
    let finder = memchr::memmem::Finder::new(token.as_bytes());
    if finder.find(text.as_bytes()).is_some() {
        return true;
    }
    if !text.contains('%') {
        return false;
    }
    let mut current = text.as_bytes().to_vec();
    for _ in 0..=DECODE_DEPTH {
        if finder.find(&current).is_some() {
            return true;
        }
        let decoded: Vec<u8> = percent_decode(&current).collect();
        if decoded == current {
            return false;
        }
        current = decoded;
    }
    false
}

/// How many layers of percent-encoding are looked through: a proxy in front of the provider
/// may decode once more than the provider does (`%252e%252e` is `..` to such a pair).
const DECODE_DEPTH: usize = 3;

/// Why a path is refused, in words for the client (it quotes nothing of the path).
pub(crate) const PATH_REFUSED: &str = "the request path may not contain '.' or '..' segments (or look-alikes), backslashes, control characters, encodings that are not UTF-8, or encoded '/', '\\', '?' or '#'";

/// Whether `path` (the part after `/gateway/{provider}/`, as the client wrote it) stays under
/// the base URL whatever the servers behind the gateway make of it: no segment is `.` or `..`
/// (raw, or after up to [`DECODE_DEPTH`] rounds of percent-decoding, or before a `;` that
/// some servers read as a parameter), and no segment decodes to a `/`, `\` or `#` (which
/// would change where the segment ends) or to a control character.
pub(crate) fn path_is_safe(path: &str) -> bool {
    path.split('/').all(segment_is_safe)
}

/// Whether a segment reads as `.` or `..` to some server: before a `;` parameter, with
/// trailing spaces trimmed, and with look-alike dots (full-width, one-dot leader, small full
/// stop) taken for dots, as servers that normalise Unicode do.
fn dots(segment: &[u8]) -> bool {
    let name = segment.split(|b| *b == b';').next().unwrap_or(segment);
    // Not UTF-8 (an overlong `%c0%ae` is a dot to some decoders): refused like a dot.
    let Ok(text) = std::str::from_utf8(name) else {
        return true;
    };
    let normal: String = text
        .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '\u{200B}' | '\u{FEFF}'))
        .chars()
        .map(|c| match c {
            '\u{FF0E}' | '\u{2024}' | '\u{FE52}' | '\u{FF61}' | '\u{3002}' => '.',
            c => c,
        })
        .collect();
    normal == "." || normal == ".."
}

/// [`path_is_safe`] for Bedrock, whose SDKs write a model id holding `/` (an inference
/// profile's ARN) as one segment with `%2F` in it: in the segment after `model/`, and only
/// there, an encoded `/` is taken, and each part it separates must be safe on its own.
pub(crate) fn bedrock_path_is_safe(path: &str) -> bool {
    let mut after_model = false;
    path.split('/').all(|segment| {
        let model = std::mem::replace(&mut after_model, segment == "model");
        if model {
            segment
                .split("%2F")
                .flat_map(|p| p.split("%2f"))
                .all(|part| !part.is_empty() && segment_is_safe(part))
        } else {
            segment_is_safe(segment)
        }
    })
}

/// Vertex AI's inference methods (`.../models/M:{method}`, `.../endpoints/E:{method}`).
const VERTEX_METHODS: [&str; 11] = [
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "computeTokens",
    "embedContent",
    "predict",
    "rawPredict",
    "streamRawPredict",
    "streamingPredict",
    "serverStreamingPredict",
    "directPredict",
];

/// Whether `method` on `path` is one of Vertex AI's inference calls, which are all the
/// gateway forwards (a service account may hold far more, and its token must not be lent for
/// the rest: deploying, deleting, tuning): a model's or an endpoint's inference method (POST
/// `{version}/[projects/P/locations/L/]publishers/X/models/M:generateContent`,
/// `.../endpoints/E:predict`), the OpenAI-compatible endpoint's chat completions, and reading
/// the publishers' models (GET).
pub(crate) fn is_vertex_operation(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let Some((version, rest)) = segments.split_first() else {
        return false;
    };
    if !(version.starts_with("v1") && version.len() <= 8) {
        return false;
    }
    // `projects/P/locations/L/` in front is the credential's (the gateway puts it in).
    let rest = match rest {
        ["projects", _, "locations", _, rest @ ..] => rest,
        ["projects", ..] => return false,
        rest => rest,
    };
    match (method, rest) {
        (&Method::GET, ["publishers", _, "models"] | ["publishers", _, "models", _]) => {
            !rest.last().is_some_and(|s| s.contains(':'))
        }
        (&Method::POST, ["publishers", _, "models", call] | ["endpoints", call]) => call
            .split_once(':')
            .is_some_and(|(name, m)| !name.is_empty() && VERTEX_METHODS.contains(&m)),
        (&Method::POST, ["endpoints", "openapi", "chat", "completions"]) => true,
        _ => false,
    }
}

/// Bedrock runtime's operations the gateway forwards (all `POST model/{modelId}/{operation}`).
const BEDROCK_OPERATIONS: [&str; 5] = [
    "invoke",
    "invoke-with-response-stream",
    "converse",
    "converse-stream",
    "count-tokens",
];

/// Whether `path` is `model/{modelId}/{operation}` with one of [`BEDROCK_OPERATIONS`].
pub(crate) fn is_bedrock_operation(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    matches!(segments.as_slice(), ["model", id, op] if !id.is_empty() && BEDROCK_OPERATIONS.contains(op))
}

fn segment_is_safe(raw: &str) -> bool {
    // The common segment (`chat`, `completions`, `gpt-4o-mini`) holds nothing to look into.
    if !raw.bytes().any(|b| {
        matches!(b, b'%' | b'.' | b'\\' | b';' | b' ') || !b.is_ascii() || b.is_ascii_control()
    }) {
        return true;
    }
    let mut current = raw.as_bytes().to_vec();
    for depth in 0..=DECODE_DEPTH {
        if dots(&current) || current.iter().any(|b| *b == b'\\' || b.is_ascii_control()) {
            return false;
        }
        // Raw, a `/` ends the segment and `?`, `#` cannot arrive; decoded, each is a trick
        // on a server that decodes once more.
        if depth > 0 && current.iter().any(|b| matches!(b, b'/' | b'#' | b'?')) {
            return false;
        }
        if !current.contains(&b'%') {
            return true;
        }
        let decoded: Vec<u8> = percent_decode(&current).collect();
        if decoded == current {
            return true;
        }
        current = decoded;
    }
    // Still encoded after that many rounds: nobody legitimate writes that.
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{bedrock_path_is_safe, is_bedrock_operation, is_vertex_operation, path_is_safe};

    #[test]
    fn bedrock_model_ids_may_hold_an_encoded_slash_and_nothing_else_may() {
        let cases = [
            (
                "model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                true,
            ),
            (
                "model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
                true,
            ),
            ("model/a%2F..%2Fb/converse", false),
            ("model/a%2F%2e%2e%2Fb/converse", false),
            ("model/%2F/converse", false),
            ("model/a%2Fb%252e%252e/converse", true),
            ("model/a%2F%252e%252e/converse", false),
            ("model/a/converse%2Fx", false),
            ("x%2Fy/model/a/converse", false),
            ("model/a%5Cb/converse", false),
        ];
        for (path, safe) in cases {
            assert_eq!(bedrock_path_is_safe(path), safe, "{path}");
        }
        let vertex = [
            (
                "POST",
                "v1beta1/publishers/google/models/gemini-2.0-flash:generateContent",
                true,
            ),
            (
                "POST",
                "v1/projects/p/locations/l/publishers/google/models/g:streamGenerateContent",
                true,
            ),
            (
                "POST",
                "v1/projects/p/locations/l/publishers/anthropic/models/c:rawPredict",
                true,
            ),
            (
                "POST",
                "v1/projects/p/locations/l/endpoints/123:predict",
                true,
            ),
            (
                "POST",
                "v1/projects/p/locations/l/endpoints/openapi/chat/completions",
                true,
            ),
            ("GET", "v1beta1/publishers/google/models", true),
            (
                "GET",
                "v1beta1/publishers/google/models/gemini-2.0-flash",
                true,
            ),
            ("DELETE", "v1/projects/p/locations/l/endpoints/123", false),
            (
                "POST",
                "v1/projects/p/locations/l/endpoints/123:deployModel",
                false,
            ),
            ("POST", "v1/projects/p/locations/l/customJobs", false),
            ("PATCH", "v1/projects/p/locations/l/models/m", false),
            ("GET", "v1/projects/p/locations", false),
            ("POST", "v1/projects/p:getIamPolicy", false),
            ("GET", "v1beta1/projects/p/cacheConfig", false),
            ("POST", "v1/publishers/google/models/g:deploy", false),
            (
                "POST",
                "v2/publishers/google/models/g:generateContent",
                false,
            ),
            (
                "GET",
                "v1/publishers/google/models/g:generateContent",
                false,
            ),
        ];
        for (method, path, ok) in vertex {
            assert_eq!(
                is_vertex_operation(&method.parse().unwrap(), path),
                ok,
                "{method} {path}"
            );
        }
        assert!(is_bedrock_operation("model/m/converse-stream"));
        assert!(is_bedrock_operation("model/m%2Fx/invoke"));
        assert!(!is_bedrock_operation("model/m/converse/x"));
        assert!(!is_bedrock_operation("model//converse"));
        assert!(!is_bedrock_operation("foundation-models"));
        assert!(!is_bedrock_operation(
            "model/m/invoke-with-bidirectional-stream"
        ));
    }

    #[test]
    fn paths_that_could_leave_the_base_url_are_refused() {
        // One line a case: the path after `/gateway/{provider}/`, and whether it may pass.
        let cases = [
            ("v1/chat/completions", true),
            ("v1/files/file-abc123/content", true),
            ("v1beta/models/gemini-1.5-pro:generateContent", true),
            ("v1/accounts/fireworks/models/llama-v3", true),
            ("v1/files/a%20b%2Cc", true),
            ("v1/models/..weird", true),
            ("v1/models/...", true),
            ("v1/models/%2e%2ex", true),
            ("", true),
            ("v1/../../api/v1/orgs", false),
            ("v1/./models", false),
            ("..", false),
            ("v1/%2e%2e/%2e%2e/api/v1/orgs", false),
            ("v1/%2E%2E/admin", false),
            ("v1/.%2e/admin", false),
            ("v1/%2e./admin", false),
            ("v1/%2e/admin", false),
            ("v1/..%2f..%2fapi/v1/orgs", false),
            ("v1/..%2F..%2Fapi/v1/orgs", false),
            ("v1/%2e%2e%2f%2e%2e%2fapi%2fv1%2forgs", false),
            ("v1/models%23/../../admin", false),
            ("v1/models%23", false),
            ("v1/..\\..\\admin", false),
            ("v1/models\\x", false),
            ("v1/..%5c..%5cadmin", false),
            ("v1/%5C", false),
            ("v1/a%2Fb", false),
            ("v1/%252e%252e/admin", false),
            ("v1/%25252e%25252e/admin", false),
            ("v1/%2525252e%2525252e/admin", false),
            ("v1/..;/admin", false),
            ("v1/..;x=1/admin", false),
            ("v1/%2e%2e;/admin", false),
            ("v1/models%00.json", false),
            ("v1/models%0d%0aX-Injected:%201", false),
            ("v1/%2e%2e%5c%2e%2e%5cadmin", false),
            ("v1/models%2523/x", false),
            ("v1/..%3f/x", false),
            ("v1/%2e%2e%3f/x", false),
            ("v1/..%20/x", false),
            ("v1/%2e%2e%20/x", false),
            ("v1/%ef%bc%8e%ef%bc%8e/x", false),
            ("v1/\u{FF0E}\u{FF0E}/x", false),
            ("v1/files/a%3Fb", false),
            ("v1/files/a%20b", true),
            ("v1/%c0%ae%c0%ae/x", false),
            ("v1/.%c0%ae/x", false),
            ("v1/%e0%80%ae%e0%80%ae/x", false),
            ("v1/%ef%bd%a1%ef%bd%a1/x", false),
            ("v1/%e3%80%82%e3%80%82/x", false),
            ("v1/..%c2%a0/x", false),
            ("v1/..%e3%80%80/x", false),
            ("v1/..%e2%80%8b/x", false),
            ("v1/..%ef%bb%bf/x", false),
            ("v1/..%ff/x", false),
            ("v1/%ff", false),
            ("v1/files/caf%c3%a9", true),
        ];
        for (path, safe) in cases {
            assert_eq!(path_is_safe(path), safe, "{path}");
        }
    }
}
