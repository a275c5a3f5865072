//! `.env` files, as `keyward run --env-file` and `keyward import dotenv` read them.
//!
//! The syntax is the common one (docker compose, python-dotenv, dotenvy): `NAME=value` lines,
//! `export ` in front allowed, `#` comments, single quotes taking everything literally, double
//! quotes with `\n`, `\t`, `\"`, `\\` and `\$` escapes, quoted values across lines.
//!
//! One thing differs, on purpose: **a `.env` file never reads the environment.** `$NAME`,
//! `${NAME}`, `${NAME:-default}` and `${NAME-default}` name only variables defined above them
//! in the same file; any other name is an error that says so. The process reading the file is
//! Keyward, which holds its master key in its environment, and a file that could write
//! `LOG_FORMAT=${KEYWARD_MASTER_KEY}` would hand the key to whatever the file's values go to
//! (a config variable, a child process under an innocent name). Expanding the caller's shell
//! variables is a surprise to most users of `.env` files anyway.
//!
//! Costs are linear in the file and bounded: a value may not grow past [`MAX_VALUE`] by
//! expansion, nor the whole file past [`MAX_TOTAL`], and defaults nest at most
//! [`MAX_DEPTH`] deep. Errors name a line and never quote it (it may hold a key).

use std::collections::HashMap;
use std::path::Path;

/// The largest value a line may expand to.
pub const MAX_VALUE: usize = 1 << 20;
/// The most that all values of a file together may expand to; also the largest file read.
pub const MAX_TOTAL: usize = 64 << 20;
/// How deep `${A:-${B:-...}}` defaults may nest.
pub const MAX_DEPTH: usize = 8;

/// A `.env` file that cannot be read as one.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct Error {
    /// The line (from 1) where the problem is.
    pub line: usize,
    /// What is wrong, in words that never quote the file.
    pub what: String,
}

/// Reads a `.env` file: its variables in the order of their first definition, a later
/// definition of a name replacing the earlier value.
pub fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    use anyhow::Context as _;
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read env file {shown}"))?;
    if meta.len() > MAX_TOTAL as u64 {
        anyhow::bail!(
            "env file {shown} is larger than {} MiB, which no .env file is",
            MAX_TOTAL >> 20
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read env file {shown}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        anyhow::anyhow!("env file {shown} is not UTF-8 text (at byte {at})")
    })?;
    parse(&text).map_err(|e| anyhow::anyhow!("cannot read env file {shown}: {e}"))
}

/// Reads several `.env` files: a later file's value for a name replaces an earlier one's.
pub fn read_all(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for path in paths {
        for (k, v) in read(path)? {
            match index.get(&k) {
                Some(&i) => out[i].1 = v,
                None => {
                    index.insert(k.clone(), out.len());
                    out.push((k, v));
                }
            }
        }
    }
    Ok(out)
}

/// Parses the text of a `.env` file (see the module's documentation).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        at: 0,
        line: 1,
        vars: Vec::new(),
        index: HashMap::new(),
        total: 0,
    };
    p.file()?;
    Ok(p.vars)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
    line: usize,
    vars: Vec<(String, String)>,
    /// Where each name is in `vars`: a later definition replaces the value in place.
    index: HashMap<String, usize>,
    total: usize,
}

fn name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn err(&self, what: impl Into<String>) -> Error {
        Error {
            line: self.line,
            what: what.into(),
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// After a value: blanks, then a comment or the end of the line.
    fn end_of_line(&mut self) -> Result<(), Error> {
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n') => Ok(()),
            Some(b'\r') if self.s.get(self.at + 1) == Some(&b'\n') => Ok(()),
            Some(b'#') => {
                self.skip_line();
                Ok(())
            }
            Some(_) => Err(self.err("text after a quoted value (quote the whole value)")),
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.at += 1;
        }
    }

    fn file(&mut self) -> Result<(), Error> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(()),
                Some(b'\n' | b'\r') => {
                    self.bump();
                }
                Some(b'#') => self.skip_line(),
                Some(_) => self.definition()?,
            }
        }
    }

    fn name(&mut self) -> Result<String, Error> {
        let start = self.at;
        if !self.peek().is_some_and(name_start) {
            return Err(self.err(
                "expected a variable name (letters, digits, `_` and `.`, not starting with a digit)",
            ));
        }
        while self.peek().is_some_and(|b| name_char(b) || b == b'.') {
            self.at += 1;
        }
        Ok(self.text[start..self.at].to_owned())
    }

    fn definition(&mut self) -> Result<(), Error> {
        let line = self.line;
        let mut name = self.name()?;
        if name == "export" && matches!(self.peek(), Some(b' ' | b'\t')) {
            self.skip_blanks();
            name = self.name()?;
        }
        self.skip_blanks();
        if self.peek() != Some(b'=') {
            return Err(self.err("expected `=` after the variable's name"));
        }
        self.at += 1;
        self.skip_blanks();
        let value = match self.peek() {
            Some(b'\'') => {
                self.at += 1;
                let v = self.single_quoted(line)?;
                self.end_of_line()?;
                v
            }
            Some(b'"') => {
                self.at += 1;
                let v = self.double_quoted(line)?;
                self.end_of_line()?;
                v
            }
            _ => self.unquoted()?,
        };
        self.total += value.len();
        if self.total > MAX_TOTAL {
            return Err(self.err(format!(
                "the file's values grow past {} MiB in all",
                MAX_TOTAL >> 20
            )));
        }
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
        Ok(())
    }

    fn single_quoted(&mut self, opened: usize) -> Result<String, Error> {
        let start = self.at;
        loop {
            match self.bump() {
                Some(b'\'') => return Ok(self.text[start..self.at - 1].to_owned()),
                Some(_) => {}
                None => return Err(unclosed(opened)),
            }
        }
    }

    fn double_quoted(&mut self, opened: usize) -> Result<String, Error> {
        let mut out = String::new();
        let mut run = self.at;
        loop {
            match self.peek() {
                None => return Err(unclosed(opened)),
                Some(b'"') => {
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    match self.bump() {
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(c @ (b'"' | b'\\' | b'$' | b'\'')) => out.push(c as char),
                        None => return Err(unclosed(opened)),
                        // Anything else stays as written, backslash included.
                        Some(_) => {
                            self.at -= 1;
                            if self.peek() == Some(b'\n') {
                                self.line -= 1;
                            }
                            out.push('\\');
                        }
                    }
                    run = self.at;
                }
                Some(b'$') => {
                    out.push_str(&self.text[run..self.at]);
                    self.substitution(&mut out, 0)?;
                    run = self.at;
                }
                Some(_) => {
                    self.bump();
                }
            }
            if out.len() > MAX_VALUE {
                return Err(self.too_long());
            }
        }
    }

    fn unquoted(&mut self) -> Result<String, Error> {
        let mut out = String::new();
        let mut run = self.at;
        loop {
            match self.peek() {
                None | Some(b'\n') => break,
                Some(b'\r') if self.s.get(self.at + 1) == Some(&b'\n') => break,
                // A `#` after a blank starts a comment.
                Some(b'#') if self.at > run && matches!(self.s[self.at - 1], b' ' | b'\t') => {
                    out.push_str(&self.text[run..self.at]);
                    self.skip_line();
                    run = self.at;
                    break;
                }
                Some(b'\\') if matches!(self.s.get(self.at + 1), Some(b'$' | b'\\')) => {
                    out.push_str(&self.text[run..self.at]);
                    out.push(self.s[self.at + 1] as char);
                    self.at += 2;
                    run = self.at;
                }
                Some(b'$') => {
                    out.push_str(&self.text[run..self.at]);
                    self.substitution(&mut out, 0)?;
                    run = self.at;
                }
                Some(_) => self.at += 1,
            }
            if out.len() > MAX_VALUE {
                return Err(self.too_long());
            }
        }
        out.push_str(&self.text[run..self.at]);
        let trimmed = out.trim_end_matches([' ', '\t']).len();
        out.truncate(trimmed);
        if out.len() > MAX_VALUE {
            return Err(self.too_long());
        }
        Ok(out)
    }

    fn too_long(&self) -> Error {
        self.err(format!("a value grows past {} KiB", MAX_VALUE >> 10))
    }

    /// At a `$`: `$NAME`, `${NAME}`, `${NAME:-default}` or `${NAME-default}`, from the
    /// variables above; a `$` before anything else is kept.
    fn substitution(&mut self, out: &mut String, depth: usize) -> Result<(), Error> {
        self.at += 1; // the `$`
        let braced = self.peek() == Some(b'{');
        if braced {
            self.at += 1;
        }
        let start = self.at;
        if !self.peek().is_some_and(name_start) {
            if braced {
                return Err(self.err("`${` must be followed by a variable name"));
            }
            out.push('$');
            return Ok(());
        }
        while self.peek().is_some_and(name_char) {
            self.at += 1;
        }
        let name = &self.text[start..self.at];
        let value = self.index.get(name).map(|&i| self.vars[i].1.clone());
        if !braced {
            return match value {
                Some(v) => {
                    out.push_str(&v);
                    Ok(())
                }
                None => Err(self.undefined(name)),
            };
        }
        // None: no default; Some(true): `:-`, which also replaces an empty value; Some(false):
        // `-`, which replaces only a missing one.
        let default_kind = match self.peek() {
            Some(b'}') => {
                self.at += 1;
                None
            }
            Some(b':') if self.s.get(self.at + 1) == Some(&b'-') => {
                self.at += 2;
                Some(true)
            }
            Some(b'-') => {
                self.at += 1;
                Some(false)
            }
            _ => return Err(self.err("`${` not closed by `}` after the variable's name")),
        };
        let Some(colon) = default_kind else {
            return match value {
                Some(v) => {
                    out.push_str(&v);
                    Ok(())
                }
                None => Err(self.undefined(name)),
            };
        };
        if depth >= MAX_DEPTH {
            return Err(self.err(format!("defaults nest more than {MAX_DEPTH} deep")));
        }
        // The default, itself expanded by the same rules, up to its closing brace.
        let mut default = String::new();
        let mut run = self.at;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err(self.err("`${` not closed by `}`")),
                Some(b'}') => {
                    default.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    break;
                }
                Some(b'$') => {
                    default.push_str(&self.text[run..self.at]);
                    self.substitution(&mut default, depth + 1)?;
                    run = self.at;
                }
                Some(_) => self.at += 1,
            }
            if default.len() > MAX_VALUE {
                return Err(self.too_long());
            }
        }
        match value {
            Some(v) if !(colon && v.is_empty()) => out.push_str(&v),
            _ => out.push_str(&default),
        }
        Ok(())
    }

    fn undefined(&self, name: &str) -> Error {
        let shown = keyward_core::secret_like::shown_name(name);
        let own = if keyward_core::env::is_keyward_own(name) {
            " (Keyward's own settings are never readable from a file)"
        } else {
            ""
        };
        self.err(format!(
            "`{shown}` is not defined above it in this file{own}; a .env file read by Keyward \
             never reads the environment: write the value itself, or a keyward:// reference"
        ))
    }
}

fn unclosed(line: usize) -> Error {
    Error {
        line,
        what: "a quote opened on this line is never closed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_common_syntax() {
        let text = "# a comment\n\
                    export A=plain value  # trailing comment\n\
                    B = 'single $A \\n kept'\n\
                    C=\"double\\n${A}\\t\\\"q\\\" \\$A\"\r\n\
                    D=x#not-a-comment\n\
                    E=\n\
                    F='multi\nline'\n\
                    G=\"two\nlines\" # c\n\
                    dotted.name=1\n\
                    A=again\n";
        assert_eq!(
            ok(text),
            pairs(&[
                ("A", "again"),
                ("B", "single $A \\n kept"),
                ("C", "double\nplain value\t\"q\" $A"),
                ("D", "x#not-a-comment"),
                ("E", ""),
                ("F", "multi\nline"),
                ("G", "two\nlines"),
                ("dotted.name", "1"),
            ])
        );
    }

    #[test]
    fn expansion_reads_only_the_file_above() {
        let text = "BASE=https://h\nURL=${BASE}/v1\nU2=$BASE/x\nPRICE=5$\nD=${MISSING:-dflt}\n\
                    N=${BASE:-no}\nE=\nE1=${E:-was empty}\nE2=${E-kept empty}\n\
                    NEST=${M1:-${M2:-${BASE}}}\n";
        assert_eq!(
            ok(text),
            pairs(&[
                ("BASE", "https://h"),
                ("URL", "https://h/v1"),
                ("U2", "https://h/x"),
                ("PRICE", "5$"),
                ("D", "dflt"),
                ("N", "https://h"),
                ("E", ""),
                ("E1", "was empty"),
                ("E2", ""),
                ("NEST", "https://h"),
            ])
        );
    }

    #[test]
    fn keywards_own_variables_are_never_read_from_the_environment() {
        // The parser has no access to the environment at all: whatever this process holds,
        // a name the file does not define above is an error, not a lookup.
        for text in [
            "LOG_FORMAT=${KEYWARD_MASTER_KEY}\n",
            "LOG_FORMAT=$KEYWARD_MASTER_KEY\n",
            "LOG_FORMAT=\"${KEYWARD_MASTER_KEY}\"\n",
            "LOG_FORMAT=${X:-${KEYWARD_MASTER_KEY}}\n",
            "LOG_FORMAT=\"a$HOME b\"\n",
            "LOG_FORMAT=${PATH}\n",
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.to_string().contains("never reads the environment"), "{e}");
        }
        // A defaulted reference to a missing name takes its default, not the environment.
        assert_eq!(
            ok("A=${KEYWARD_MASTER_KEY:-none}\n"),
            pairs(&[("A", "none")])
        );
        // What the file itself defines is the file's.
        assert_eq!(
            ok("KEYWARD_X=mine\nA=${KEYWARD_X}\n"),
            pairs(&[("KEYWARD_X", "mine"), ("A", "mine")])
        );
    }

    #[test]
    fn errors_name_the_line_and_never_quote_it() {
        let key = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        for (text, line) in [
            (format!("A=1\nB='{key}\n"), 2),
            (format!("A=1\n\nB=\"{key}\" trailing\n"), 3),
            (format!("{key} {key}\n"), 1),
            (format!("A=${{{}}}\n", key.replace('-', "_")), 1),
        ] {
            let e = parse(&text).expect_err(&text);
            assert_eq!(e.line, line, "{e}");
            assert!(!e.to_string().contains(&key[8..]), "{e}");
        }
    }

    #[test]
    fn expansion_is_bounded() {
        // Each line doubles the last: 2^40 bytes unless the parser stops it.
        let mut text = String::from("A0=xxxxxxxxxxxxxxxx\n");
        for i in 1..40 {
            text.push_str(&format!("A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
        }
        let e = parse(&text).expect_err("an expansion bomb");
        assert!(e.to_string().contains("grows past"), "{e}");
        let deep = format!("A={}x{}\n", "${B:-".repeat(20), "}".repeat(20));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn many_variables_cost_linear_time() {
        // 200 000 variables, each referring to the one before: a quadratic parser would not
        // finish within the test's patience, a linear one takes well under a second.
        let mut text = String::from("V0=x\n");
        for i in 1..200_000 {
            text.push_str(&format!("V{i}=${{V{}:-y}}\n", i - 1));
        }
        let vars = ok(&text);
        assert_eq!(vars.len(), 200_000);
        assert_eq!(vars[199_999].1, "x");
    }
}
