//! A mock LLM provider for benchmarks: `POST /v1/chat/completions` answers a small fixed
//! OpenAI-shaped completion at once, `GET /v1/models` a list of one. One runtime thread, so
//! every proxy measured against it meets the same upstream.
//!
//! ```sh
//! cargo run --release -p keyward-server --example mock_provider -- 127.0.0.1:18090
//! ```

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const MODELS: &str =
    r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","owned_by":"bench"}]}"#;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let json = [("content-type", "application/json")];
            let app = axum::Router::new()
                .route(
                    "/v1/chat/completions",
                    axum::routing::post(move || async move { (json, COMPLETION) }),
                )
                .route(
                    "/v1/models",
                    axum::routing::get(move || async move { (json, MODELS) }),
                );
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            println!("mock provider on http://{}", listener.local_addr()?);
            axum::serve(listener, app).await
        })
}
