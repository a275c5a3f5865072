//! A mock LLM provider for benchmarks: the test kit's mock provider, scripted so that
//! `POST /v1/chat/completions` answers a small fixed OpenAI-shaped completion at once and
//! `GET /v1/models` a list of one, keeping no record. One runtime thread, so every proxy
//! measured against it meets the same upstream.
//!
//! ```sh
//! cargo run --release -p keyward-server --example mock_provider -- 127.0.0.1:18090
//! ```

use keyward_testkit::{MockProvider, Reply};

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const MODELS: &str =
    r#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","owned_by":"bench"}]}"#;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mock = MockProvider::builder()
                .unrecorded()
                .bind(addr)
                .start()
                .await;
            let fixed = |body: &str| {
                Reply::ok()
                    .header("content-type", "application/json")
                    .text(body)
            };
            mock.on_path("/v1/chat/completions", fixed(COMPLETION));
            mock.on_path("/v1/models", fixed(MODELS));
            println!("mock provider on {}", mock.url());
            std::future::pending::<()>().await;
            Ok(())
        })
}
