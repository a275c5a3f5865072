//! Masking of secrets in a byte stream (what `keyward run` does to a child's output).
//!
//! [`Masker`] is fed the stream chunk by chunk and replaces every occurrence of a secret with
//! its mask, also when a secret is split across chunks: it holds back the shortest tail of the
//! input that could still turn into a secret, and emits it as soon as the next chunk shows it
//! does not (or at the end). Matching is Aho-Corasick, leftmost-longest.

use aho_corasick::{AhoCorasick, MatchKind};
use zeroize::Zeroizing;

/// A streaming secret masker.
pub struct Masker {
    finder: Option<AhoCorasick>,
    /// The secrets, to check whether a tail of the input may be the start of one.
    secrets: Vec<Zeroizing<Vec<u8>>>,
    masks: Vec<Vec<u8>>,
    /// Bytes that are the first byte of some secret.
    first: [bool; 256],
    longest: usize,
    pending: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// A masker replacing each secret with its mask. Empty secrets are ignored.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a str)>) -> Self {
        let mut secrets = Vec::new();
        let mut masks = Vec::new();
        for (secret, mask) in pairs {
            if !secret.is_empty() && !secrets.iter().any(|s: &Zeroizing<Vec<u8>>| **s == secret) {
                secrets.push(Zeroizing::new(secret.to_vec()));
                masks.push(mask.as_bytes().to_vec());
            }
        }
        let mut first = [false; 256];
        for s in &secrets {
            first[usize::from(s[0])] = true;
        }
        let finder = if secrets.is_empty() {
            None
        } else {
            // Building fails only for pattern sets far beyond what a process environment holds.
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(secrets.iter().map(|s| s.as_slice()))
                .ok()
        };
        Self {
            finder,
            longest: secrets.iter().map(|s| s.len()).max().unwrap_or(0),
            secrets,
            masks,
            first,
            pending: Zeroizing::new(Vec::new()),
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `input` with every secret masked, in one piece (a header value, say); `None` when it
    /// holds no secret. What [`Masker::push`] holds back is not involved.
    pub fn mask_whole(&self, input: &[u8]) -> Option<Vec<u8>> {
        let finder = self.finder.as_ref()?;
        let mut found = finder.find_iter(input).peekable();
        found.peek()?;
        let mut out = Vec::with_capacity(input.len());
        let mut emitted = 0;
        for m in found {
            out.extend_from_slice(&input[emitted..m.start()]);
            out.extend_from_slice(&self.masks[m.pattern().as_usize()]);
            emitted = m.end();
        }
        out.extend_from_slice(&input[emitted..]);
        Some(out)
    }

    /// Feeds `input`; appends to `out` whatever can safely be emitted now.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(finder) = &self.finder else {
            out.extend_from_slice(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let hold_from = self.hold_from();
        let mut emitted = 0;
        for m in finder.find_iter(self.pending.as_slice()) {
            if m.start() >= hold_from {
                break;
            }
            out.extend_from_slice(&self.pending[emitted..m.start()]);
            out.extend_from_slice(&self.masks[m.pattern().as_usize()]);
            emitted = m.end();
        }
        let keep_from = hold_from.max(emitted);
        out.extend_from_slice(&self.pending[emitted..keep_from]);
        self.pending.drain(..keep_from);
    }

    /// Ends the stream: emits what was held back, masked.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let Some(finder) = &self.finder else { return };
        let mut emitted = 0;
        for m in finder.find_iter(self.pending.as_slice()) {
            out.extend_from_slice(&self.pending[emitted..m.start()]);
            out.extend_from_slice(&self.masks[m.pattern().as_usize()]);
            emitted = m.end();
        }
        out.extend_from_slice(&self.pending[emitted..]);
        self.pending.clear();
    }

    /// The start of the earliest tail of `pending` that is a proper prefix of some secret (and
    /// so may still complete with more input); `pending.len()` if there is none.
    fn hold_from(&self) -> usize {
        let len = self.pending.len();
        let window = self.longest.saturating_sub(1).min(len);
        for p in len - window..len {
            if !self.first[usize::from(self.pending[p])] {
                continue;
            }
            let tail = &self.pending[p..];
            if self
                .secrets
                .iter()
                .any(|s| s.len() > tail.len() && s.starts_with(tail))
            {
                return p;
            }
        }
        len
    }
}
