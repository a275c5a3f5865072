//! The mock provider itself: its answers in each provider's shape, its record, its scripts and
//! its streams.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use keyward_testkit::{MockProvider, Reply, Shape};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status_and_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends `req`; its status and JSON body (`Null` when there is none).
async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    status_and_json(req.send().await.unwrap()).await
}

#[tokio::test]
async fn it_answers_in_each_providers_shape_and_records_every_request() {
    let mock = MockProvider::start().await;
    let url = mock.url();
    let c = client();

    // OpenAI: a completion naming the model asked for, and a model list.
    let (st, body) = call(
        c.post(format!("{url}/v1/chat/completions?trace=1"))
            .bearer_auth("sk-openai")
            .header("x-extra", "kept")
            .json(&json!({"model": "gpt-x", "messages": []})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-x");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    let seen = mock.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("trace=1"));
    assert_eq!(seen.path_and_query(), "/v1/chat/completions?trace=1");
    assert_eq!(seen.header("x-extra"), Some("kept"));
    assert!(seen.header_names().contains(&"content-type"));
    assert_eq!(seen.json()["model"], "gpt-x");
    assert_eq!(seen.shape(), Shape::OpenAi);
    assert_eq!(seen.key(), Some("sk-openai"));
    let (st, body) = call(c.get(format!("{url}/v1/models"))).await;
    assert_eq!((st, body["object"].as_str()), (200, Some("list")));

    // Anthropic: a message; without `anthropic-version`, 400 in its shape.
    let (st, body) = call(
        c.post(format!("{url}/v1/messages"))
            .header("x-api-key", "sk-ant")
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-y", "max_tokens": 1, "messages": []})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        (&body["type"], &body["model"], &body["content"][0]["text"]),
        (&json!("message"), &json!("claude-y"), &json!("Hello"))
    );
    assert_eq!(mock.last().key(), Some("sk-ant"));
    let (st, body) = call(
        c.get(format!("{url}/v1/models"))
            .header("x-api-key", "sk-ant"),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // Gemini: generateContent, the key in a header or the query.
    let (st, body) = call(
        c.post(format!(
            "{url}/v1beta/models/gemini-z:generateContent?key=AIza-q"
        ))
        .json(&json!({"contents": []})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Hello"
    );
    assert_eq!(body["modelVersion"], "gemini-z");
    assert_eq!(
        (mock.last().shape(), mock.last().key()),
        (Shape::Gemini, Some("AIza-q"))
    );
    let (st, body) = call(
        c.get(format!("{url}/v1beta/models"))
            .header("x-goog-api-key", "AIza-h"),
    )
    .await;
    assert_eq!(
        (st, body["models"][0]["name"].as_str()),
        (200, Some("models/gemini-x"))
    );

    // Azure: the deployment's path with api-version; without it, 404 in its shape.
    let azure = format!("{url}/openai/deployments/dep-1/chat/completions");
    let (st, body) = call(
        c.post(format!("{azure}?api-version=2024-10-21"))
            .header("api-key", "azure-key")
            .json(&json!({"messages": []})),
    )
    .await;
    assert_eq!((st, body["model"].as_str()), (200, Some("dep-1")));
    assert_eq!(
        (mock.last().shape(), mock.last().key()),
        (Shape::Azure, Some("azure-key"))
    );
    let (st, body) = call(c.post(&azure).header("api-key", "azure-key")).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("404")));

    // Anything else: 200 and an empty object, whatever the method.
    let resp = c
        .request(reqwest::Method::PATCH, format!("{url}/v1/files/a%2Cb"))
        .body("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = mock.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("PATCH", "/v1/files/a%2Cb")
    );
    assert_eq!(&seen.body[..], b"raw");

    assert_eq!(mock.hits(), 9);
    assert_eq!(mock.received().len(), 9);
    assert_eq!(mock.hits_on("/v1beta"), 2);
    assert_eq!(mock.received_on("/openai").len(), 2);
}

#[tokio::test]
async fn scripts_answer_in_order_by_path_and_by_key_and_keys_it_does_not_know_get_401() {
    let mock = MockProvider::builder()
        .key("sk-good")
        .key("sk-busy")
        .start()
        .await;
    let url = mock.url();
    let chat = |key: &'static str| {
        client()
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "m"}))
            .send()
    };

    // A plan: 429 with Retry-After, then 500, then the usual answers again.
    mock.script([
        Reply::status(429).header("retry-after", "1"),
        Reply::status(500),
    ]);
    let resp = chat("sk-good").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let (_, body) = status_and_json(resp).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(chat("sk-good").await.unwrap().status(), 500);
    assert_eq!(chat("sk-good").await.unwrap().status(), 200);

    // A key it does not know: 401 in the provider's shape, the plan untouched.
    mock.push(Reply::ok().json(json!({"scripted": true})));
    let (st, body) = status_and_json(chat("sk-unknown").await.unwrap()).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (st, body) = status_and_json(chat("sk-good").await.unwrap()).await;
    assert_eq!((st, body["scripted"].as_bool()), (200, Some(true)));

    // By key and by path, every time, before the plan.
    mock.on_key("sk-busy", Reply::status(429).header("retry-after", "120"));
    mock.on_path("/moved", Reply::status(302).header("location", "/stolen"));
    mock.on_path("/v1/quote", Reply::status(401).text("quoted"));
    for _ in 0..2 {
        assert_eq!(chat("sk-busy").await.unwrap().status(), 429);
        let resp = client()
            .get(format!("{url}/moved/v1/models"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "/stolen");
    }
    let resp = client()
        .get(format!("{url}/v1/quote-split"))
        .bearer_auth("sk-good")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "/v1/quote is not /v1/quote-split");
    let resp = client()
        .get(format!("{url}/v1/quote/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (401, "quoted".to_owned())
    );
    // The other shapes' refusals.
    let (st, body) = call(
        client()
            .post(format!("{url}/v1/messages"))
            .header("x-api-key", "sk-unknown")
            .header("anthropic-version", "2023-06-01"),
    )
    .await;
    assert_eq!(
        (st, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let (st, body) = call(
        client()
            .get(format!("{url}/v1beta/models"))
            .header("x-goog-api-key", "AIza-unknown"),
    )
    .await;
    assert_eq!(
        (st, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );

    // A delay before the answer.
    mock.push(Reply::ok().delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(chat("sk-good").await.unwrap().status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn it_streams_in_each_shape_holds_until_released_and_sees_a_client_go() {
    let mock = MockProvider::builder()
        .stream_pause(Duration::from_millis(50))
        .start()
        .await;
    let url = mock.url();

    // The usual OpenAI stream, in events the SDKs parse, with the pause between them.
    let started = Instant::now();
    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "three pauses"
    );
    let deltas: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(deltas, "Hello");
    assert!(text.ends_with("data: [DONE]\n\n"));

    // Anthropic's event types, and Gemini's `alt=sse`.
    let text = client()
        .post(format!("{url}/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "c", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text = client()
        .post(format!(
            "{url}/v1beta/models/g:streamGenerateContent?alt=sse"
        ))
        .header("x-goog-api-key", "AIza")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
    assert!(text.contains("\"finishReason\":\"STOP\""), "{text}");

    // Held after the first event until the test releases it.
    mock.push(Reply::sse(["data: 1\n\n", "data: 2\n\n"]).hold_after(1));
    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 1\n\n");
    let waiting = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(waiting.is_err(), "the second event waits");
    mock.release();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: 2\n\n");
    assert!(stream.next().await.is_none());
    assert_eq!(
        mock.streams_dropped(),
        0,
        "every stream so far ran to its end"
    );

    // Forever, until the client goes: then the mock sees it go.
    mock.push(
        Reply::sse(["data: x\n\n"])
            .pause(Duration::from_millis(20))
            .forever(),
    );
    let mut resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(&resp.chunk().await.unwrap().unwrap()[..], b"data: x\n\n");
    }
    assert_eq!(mock.streams_dropped(), 0);
    drop(resp);
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.streams_dropped() == 0 {
        assert!(Instant::now() < deadline, "the dropped stream was not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A body in chunks that is not an event stream.
    mock.push(Reply::status(400).chunks(["{\"a\":", "1}"]));
    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "{\"a\":1}");
}

#[tokio::test]
async fn an_unrecorded_mock_counts_but_keeps_nothing() {
    let mock = MockProvider::builder().unrecorded().start().await;
    for _ in 0..3 {
        client()
            .post(format!("{}/v1/chat/completions", mock.url()))
            .body("{}")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(mock.hits(), 3);
    assert!(mock.received().is_empty());
}
