//! Sign a KMS JSON request with aws-sigv4 and print the headers as JSON.
//! Usage: sigv4 URL TARGET BODY ACCESS_KEY SECRET_KEY [SESSION_TOKEN|-] [UNIX_SECONDS|now]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (url, target, body, ak, sk) = (&a[1], &a[2], &a[3], &a[4], &a[5]);
    let token = a.get(6).filter(|t| t.as_str() != "-").cloned();
    let time = match a.get(7).map(String::as_str) {
        None | Some("now") => SystemTime::now(),
        Some(s) => UNIX_EPOCH + Duration::from_secs(s.parse().expect("unix seconds")),
    };
    // expiry None; provider name is free text.
    let identity: Identity = Credentials::new(ak, sk, token, None, "keyward").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("signable");
    let (instructions, signature) = sign(signable, &params).expect("sign").into_parts();
    let mut req = http::Request::builder()
        .method("POST")
        .uri(url.as_str())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target.as_str())
        .body(body.clone())
        .expect("request");
    instructions.apply_to_request_http1x(&mut req);
    println!("signature={signature}");
    for (k, v) in req.headers() {
        println!("{}: {}", k, v.to_str().unwrap_or("?"));
    }
}
