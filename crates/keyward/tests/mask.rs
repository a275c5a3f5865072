//! Masking of secrets in a stream, whatever the chunking.

// Helpers here panic on purpose: a failed step is a failed test.
#![allow(clippy::unwrap_used)]

use keyward::mask::Masker;
use proptest::prelude::*;

const OPENAI: &str = "sk-proj-0123456789abcdefWXYZ";
const ANTHROPIC: &str = "sk-ant-api03-zyxwvutsrq9876";

fn masker() -> Masker {
    Masker::new([
        (OPENAI.as_bytes(), "sk-...WXYZ"),
        (ANTHROPIC.as_bytes(), "sk-ant-...9876"),
    ])
}

fn run(chunks: &[&[u8]]) -> String {
    let mut m = masker();
    let mut out = Vec::new();
    for c in chunks {
        m.push(c, &mut out);
    }
    m.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn whole_secrets_are_replaced() {
    let text = format!("key={OPENAI}\nother={ANTHROPIC} and {OPENAI}!");
    assert_eq!(
        run(&[text.as_bytes()]),
        "key=sk-...WXYZ\nother=sk-ant-...9876 and sk-...WXYZ!"
    );
}

#[test]
fn a_secret_split_across_writes_is_masked() {
    let (a, b) = OPENAI.split_at(10);
    assert_eq!(
        run(&[b"x ", a.as_bytes(), b.as_bytes(), b" y"]),
        "x sk-...WXYZ y"
    );
    // Byte by byte.
    let text = format!("[{ANTHROPIC}]");
    let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
    assert_eq!(run(&bytes), "[sk-ant-...9876]");
}

#[test]
fn output_is_not_held_back_longer_than_needed() {
    let mut m = masker();
    let mut out = Vec::new();
    m.push(b"hello world\n", &mut out);
    assert_eq!(out, b"hello world\n", "nothing here can start a secret");
    out.clear();
    m.push(b"prompt> sk-pr", &mut out);
    assert_eq!(
        out, b"prompt> ",
        "only the possible start of a secret waits"
    );
    out.clear();
    m.push(b"ogress\n", &mut out);
    assert_eq!(
        out, b"sk-progress\n",
        "and is released when it turns out not to be one"
    );
}

#[test]
fn a_prefix_that_never_completes_is_flushed_at_the_end() {
    assert_eq!(run(&[b"ends with sk-proj-0123"]), "ends with sk-proj-0123");
}

#[test]
fn nothing_to_mask_passes_through() {
    let mut m = Masker::new(std::iter::empty::<(&[u8], &str)>());
    let mut out = Vec::new();
    m.push(b"anything", &mut out);
    m.finish(&mut out);
    assert_eq!(out, b"anything");
    assert!(m.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// However the output is cut into writes, the result is the same as masking it whole, and
    /// no secret survives.
    #[test]
    fn chunking_never_matters(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(OPENAI.to_string()),
                Just(ANTHROPIC.to_string()),
                "[a-z sk\\-_0-9]{0,12}",
            ],
            0..12,
        ),
        cuts in proptest::collection::vec(0usize..400, 0..10),
    ) {
        let text = parts.concat();
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            chunks.push(&bytes[at..c]);
            at = c;
        }
        chunks.push(&bytes[at..]);
        let masked = run(&chunks);
        prop_assert_eq!(&masked, &run(&[bytes]));
        prop_assert!(!masked.contains(OPENAI) && !masked.contains(ANTHROPIC));
    }
}
