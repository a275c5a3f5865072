//! Throughput of the masking filter `keyward run` puts on a child's output, against a plain
//! copy of the same bytes in the same run. DESIGN target: masking must not make a chatty child
//! noticeably slower.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyward::mask::Masker;

/// 16 MiB of log-like lines, with a secret in one line of every thousand and plenty of
/// near-misses (`sk-` prefixes) in between.
fn output() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 << 20);
    let mut i = 0u64;
    while out.len() < 16 << 20 {
        let line = if i % 1000 == 7 {
            format!("{i:08} request done, key=sk-proj-BENCHSECRET0123456789abcdWXYZ status=200\n")
        } else {
            format!("{i:08} INFO handled GET /v1/models in 12ms (task sk-{i} of batch)\n")
        };
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let data = output();
    let secrets: [(&[u8], &str); 3] = [
        (b"sk-proj-BENCHSECRET0123456789abcdWXYZ", "sk-...WXYZ"),
        (b"sk-ant-api03-BENCHSECRETanthropic0123", "sk-ant-...0123"),
        (b"AIzaBENCHSECRETgemini0123456789", "AIz...6789"),
    ];
    let mut group = c.benchmark_group("child_output_16MiB_in_64KiB_writes");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    group.bench_function("plain_copy", |b| {
        let mut out = Vec::with_capacity(data.len());
        b.iter(|| {
            out.clear();
            for chunk in data.chunks(64 * 1024) {
                out.extend_from_slice(black_box(chunk));
            }
            black_box(out.len())
        })
    });
    group.bench_function("masked", |b| {
        let mut out = Vec::with_capacity(data.len());
        b.iter(|| {
            let mut m = Masker::new(secrets);
            out.clear();
            for chunk in data.chunks(64 * 1024) {
                m.push(black_box(chunk), &mut out);
            }
            m.finish(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
