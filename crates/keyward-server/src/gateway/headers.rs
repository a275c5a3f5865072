//! Headers on their way through: the hop-by-hop ones dropped, the client's keys and gateway
//! tokens kept back, the provider's auth header written, and the key masked in the answer's.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use keyward_core::Provider;
use keyward_core::provider::AuthStyle;
use keyward_store::GATEWAY_TOKEN_PREFIX;
use secrecy::{ExposeSecret as _, SecretString};

use super::guard;

/// Headers that describe one connection, not the message, and are never forwarded (hyper
/// writes `content-length` and `transfer-encoding` again from the body it sends).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
];

/// Headers that ask a server to take a request for another method.
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Headers that may carry a key: the client's never reach the upstream.
pub(super) const CREDENTIAL_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("xi-api-key"),
];

/// Removes the hop-by-hop headers: the fixed list, and any the `Connection` header names
/// (RFC 9110 §7.6.1).
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The client's headers as they go upstream: less connection-level ones and any key, method
/// overrides and whatever carries a gateway token (the one `presented`, or any other); asking
/// for no compression, and without `Expect`.
pub(super) fn outgoing_headers(mut headers: HeaderMap, presented: Option<&str>) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    // Method overrides would make a POST a TRACE or a PROPFIND to servers that honour them.
    for name in CREDENTIAL_HEADERS.iter().chain(&METHOD_OVERRIDES) {
        headers.remove(name);
    }
    // No gateway token goes further, wherever else the client put one (a cookie, a header of
    // its own): not the one presented, nor any other (another organization's, say).
    let carrying: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| {
            v.to_str()
                .is_ok_and(|v| guard::holds(v, GATEWAY_TOKEN_PREFIX))
                || presented
                    .is_some_and(|t| memchr::memmem::find(v.as_bytes(), t.as_bytes()).is_some())
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in carrying {
        headers.remove(name);
    }
    // Answers are checked for the key before the client sees them, which a compressed body
    // would defeat: the provider is asked for none.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // `Expect: 100-continue` was between the client and us (hyper answered it when the body
    // was first read); the provider gets the body at once.
    headers.remove(header::EXPECT);
    headers
}

/// `key` as it is, and as an answer may quote it when it holds characters JSON or URLs
/// escape (AWS secrets and session tokens hold `/` and `+`): JSON's `\/`, and percent-encoded
/// as encoders do it (unreserved characters kept, `/` kept or not, hex digits in either case).
fn quoted_forms(key: &SecretString) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
    let raw = key.expose_secret();
    let mut forms = vec![zeroize::Zeroizing::new(raw.as_bytes().to_vec())];
    if raw.contains('/') {
        forms.push(zeroize::Zeroizing::new(
            raw.replace('/', "\\/").into_bytes(),
        ));
    }
    for keep_slash in [false, true] {
        for upper in [true, false] {
            let mut encoded = zeroize::Zeroizing::new(String::with_capacity(raw.len() * 3));
            for b in raw.bytes() {
                if b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'_' | b'.' | b'~')
                    || (keep_slash && b == b'/')
                {
                    encoded.push(char::from(b));
                } else {
                    let hex = if upper {
                        b"0123456789ABCDEF"
                    } else {
                        b"0123456789abcdef"
                    };
                    encoded.push('%');
                    encoded.push(char::from(hex[usize::from(b >> 4)]));
                    encoded.push(char::from(hex[usize::from(b & 15)]));
                }
            }
            if encoded.as_str() != raw && !forms.iter().any(|f| f.as_slice() == encoded.as_bytes())
            {
                forms.push(zeroize::Zeroizing::new(encoded.as_bytes().to_vec()));
            }
        }
    }
    forms
}

/// What replaces `key`, in every form an answer may quote it in ([`quoted_forms`]), with its
/// hint.
pub(super) fn masker(provider: &Provider, key: &SecretString) -> keyward_core::mask::Masker {
    let hint = keyward_core::credential::key_hint(provider, key);
    let forms = quoted_forms(key);
    keyward_core::mask::Masker::new(forms.iter().map(|f| (f.as_slice(), hint.as_str())))
}

/// Replaces `key` with its hint in every header value that holds it (the masker is built only
/// then: the common answer quotes nothing).
pub(super) fn mask_headers(headers: &mut HeaderMap, provider: &Provider, key: &SecretString) {
    // Header names are lower case: a key made into a name is found lower-cased (only names
    // long enough to hold it are looked at).
    let secret = key.expose_secret();
    if headers.keys().any(|n| n.as_str().len() >= secret.len()) {
        let lower = secret.to_ascii_lowercase();
        let in_name = memchr::memmem::Finder::new(lower.as_bytes());
        let named: Vec<HeaderName> = headers
            .keys()
            .filter(|n| in_name.find(n.as_str().as_bytes()).is_some())
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // Only a value at least as long as the key can hold it; the common answer has none, and
    // then no searcher is built at all.
    let mut finder = None;
    let mut masker_once = None;
    let mut forms = None;
    for value in headers.values_mut() {
        if value.len() < secret.len() {
            continue;
        }
        let finder = finder.get_or_insert_with(|| memchr::memmem::Finder::new(secret.as_bytes()));
        // The key escaped (`%2F`, `\/`) is looked for only in values holding an escape.
        let escaped = memchr::memchr2(b'%', b'\\', value.as_bytes()).is_some()
            && forms
                .get_or_insert_with(|| quoted_forms(key))
                .iter()
                .any(|f| memchr::memmem::find(value.as_bytes(), f).is_some());
        if finder.find(value.as_bytes()).is_none() && !escaped {
            continue;
        }
        let masker = masker_once.get_or_insert_with(|| masker(provider, key));
        // A hint is printable ASCII, so the masked value is still a header value; if it were
        // not, the header would go out empty rather than with the key.
        let masked = masker
            .mask_whole(value.as_bytes())
            .and_then(|m| HeaderValue::from_bytes(&m).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        *value = masked;
    }
}

/// The provider's auth header for `key`.
/// `Err` when the key cannot be a header value (a stray newline, say).
pub(super) fn auth_header(
    provider: &Provider,
    key: &SecretString,
) -> Result<(HeaderName, HeaderValue), ()> {
    let (name, value) = match provider.auth {
        AuthStyle::XApiKey => (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::GoogApiKey => (
            HeaderName::from_static("x-goog-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::ApiKeyHeader => (
            HeaderName::from_static("api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::XiApiKey => (
            HeaderName::from_static("xi-api-key"),
            HeaderValue::from_str(key.expose_secret()),
        ),
        AuthStyle::Token => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Token {}", key.expose_secret())),
        ),
        // A provider that needs no key (a local Ollama) but was given one gets it the way
        // OpenAI-compatible servers take it. Signed providers never get here (`unsupported`).
        AuthStyle::Bearer | AuthStyle::None | AuthStyle::ServiceAccount | AuthStyle::AwsSigV4 => (
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())),
        ),
    };
    let mut value = value.map_err(|_| ())?;
    value.set_sensitive(true);
    Ok((name, value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A secret holding `/` and `+` (an AWS session token) quoted back JSON-escaped or
    /// percent-encoded, in a body or a header, is masked as it is.
    #[test]
    fn a_key_is_masked_in_the_forms_answers_quote_it_in() {
        let provider = Provider::get("bedrock").unwrap();
        let key = SecretString::from("IQoJb3Jp/Z2lu+X2VjEXAMPLE/token==");
        let m = masker(provider, &key);
        for quoted in [
            "IQoJb3Jp/Z2lu+X2VjEXAMPLE/token==",
            r"IQoJb3Jp\/Z2lu+X2VjEXAMPLE\/token==",
            "IQoJb3Jp%2FZ2lu%2BX2VjEXAMPLE%2Ftoken%3D%3D",
            "IQoJb3Jp%2fZ2lu%2bX2VjEXAMPLE%2ftoken%3d%3d",
            "IQoJb3Jp/Z2lu%2BX2VjEXAMPLE/token%3D%3D",
        ] {
            let body = format!(r#"{{"message":"token {quoted} refused"}}"#);
            let masked = String::from_utf8(m.mask_whole(body.as_bytes()).unwrap()).unwrap();
            assert!(!masked.contains("EXAMPLE"), "{quoted}: {masked}");
            let mut headers = HeaderMap::new();
            headers.insert("x-echo", HeaderValue::from_str(&body).unwrap());
            mask_headers(&mut headers, provider, &key);
            let value = headers["x-echo"].to_str().unwrap();
            assert!(!value.contains("EXAMPLE"), "{quoted}: {value}");
        }
    }
}
