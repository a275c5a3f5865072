//! Seal and open of a 100-byte secret, and wrap/unwrap of a data key (DESIGN §7: under 2 µs each).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_crypto::{DataKey, FieldContext, KeyId, Keyring, MasterKey};

fn bench(c: &mut Criterion) {
    let ring = Keyring::new(
        vec![MasterKey::from_bytes(
            KeyId::new("k1").expect("valid kid"),
            &[7; 32],
        )],
        "bench",
    )
    .expect("one key");
    let ctx = FieldContext {
        kind: "credential",
        record_id: "0193a0b4-7c1e-7d2a-9f00-0123456789ab",
        org: "acme",
        field: "openai/api_key",
        bound: br#"{"base_url":"https://api.openai.com/v1"}"#,
    };
    let secret = [b'x'; 100];
    let dek = DataKey::generate().expect("rng");
    let sealed = dek.seal(&ctx, &secret).expect("seal");
    let wrapped = ring.wrap(&dek, ctx.record_id).expect("wrap");

    c.bench_function("seal_100B", |b| {
        b.iter(|| dek.seal(black_box(&ctx), black_box(&secret)))
    });
    c.bench_function("open_100B", |b| {
        b.iter(|| dek.open(black_box(&ctx), black_box(&sealed)))
    });
    c.bench_function("wrap_dek", |b| {
        b.iter(|| ring.wrap(black_box(&dek), ctx.record_id))
    });
    c.bench_function("unwrap_dek", |b| {
        b.iter(|| ring.unwrap(black_box(&wrapped), ctx.record_id))
    });
    c.bench_function("unwrap_and_open_100B", |b| {
        b.iter(|| {
            let dek = ring.unwrap(black_box(&wrapped), ctx.record_id)?;
            dek.open(&ctx, &sealed)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
