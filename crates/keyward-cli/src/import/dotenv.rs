//! `.env` files, read by the library's `keyward::dotenv` (as `keyward run --env-file` reads
//! them): their variables, a later file's value for a name replacing an earlier one's, into
//! items.

use std::path::{Path, PathBuf};

use anyhow::Result;
use keyward_core::CredentialName;

use super::variables::from_variables;
use super::{Read, VarRules};

/// Reads `files` (clap requires at least one) into items named `name` (by default `dotenv`):
/// origins name the first file, and a relative path in one (a service-account file) is read
/// from its directory.
pub(crate) fn read(files: &[PathBuf], name: Option<&str>, rules: VarRules) -> Result<Read> {
    let pairs = keyward::dotenv::read_all(files)?;
    let first = &files[0];
    let label = first.display().to_string();
    let name = CredentialName::new(name.unwrap_or("dotenv"))?;
    let dir = first
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    Ok(from_variables(&pairs, &label, &name, dir, rules))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::read;
    use crate::import::VarRules;
    use crate::import::testing::{CANARY, assert_quiet, credentials, errors, said};

    const RULES: VarRules = VarRules {
        sensitive_by_name: true,
        only_providers: false,
    };

    /// Files of these contents in a fresh directory (kept while the directory lives).
    fn files(contents: &[&[u8]]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let paths = contents
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let path = dir.path().join(format!("{i}.env"));
                std::fs::write(&path, c).expect("written");
                path
            })
            .collect();
        (dir, paths)
    }

    #[test]
    fn keywards_own_settings_in_a_file_are_never_imported() {
        let (_dir, paths) = files(&[format!(
            "KEYWARD_ADMIN_TOKEN=kwt_{CANARY}\nkeyward_token={CANARY}\nKEYWARD_DATABASE_URL=postgres://k:pw@db/k\nAPP_MODE=production\n"
        )
        .as_bytes()]);
        let read = read(&paths, None, RULES).expect("read");
        let names: Vec<String> = read
            .items
            .iter()
            .map(|i| match i {
                crate::import::Item::Variable { name, .. } => name.to_string(),
                crate::import::Item::Credential { provider, .. } => provider.id.to_owned(),
            })
            .collect();
        assert_eq!(names, ["APP_MODE"]);
        let said = said(&read);
        assert_eq!(
            said.matches("one of Keyward's own settings, which is never imported")
                .count(),
            3,
            "{said}"
        );
        assert_quiet(&said);
    }

    #[test]
    fn a_key_where_a_base_url_belongs_is_not_printed_by_the_plan() {
        let (_dir, paths) = files(&[format!(
            "OPENAI_API_KEY=sk-proj-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nOPENAI_BASE_URL={CANARY}\n"
        )
        .as_bytes()]);
        let read = read(&paths, None, RULES).expect("read");
        let described: Vec<String> = read
            .items
            .iter()
            .map(|i| {
                let (what, how, origin) = crate::import::plan::describe(i);
                format!("{what} {how} {origin}")
            })
            .collect();
        assert_eq!(described.len(), 1, "{described:?}");
        assert!(described[0].contains("base_url=(a value that looks like a key, not shown)"));
        assert_quiet(&described.join("\n"));
    }

    /// The error of reading `contents`, as it is printed (with its causes).
    fn refusal(contents: &[u8]) -> String {
        let (_dir, paths) = files(&[contents]);
        match read(&paths, None, RULES) {
            Ok(_) => panic!("read"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn an_empty_file_reads_nothing() {
        let (_dir, paths) = files(&[b"", b"# only a comment\n\n"]);
        let read = read(&paths, None, RULES).expect("read");
        assert!(read.items.is_empty() && read.skipped.is_empty());
    }

    #[test]
    fn malformed_lines_are_told_by_number_never_quoted() {
        let unclosed = format!("A=1\nOPENAI_API_KEY=\"{CANARY}\n");
        let e = refusal(unclosed.as_bytes());
        assert!(e.contains("line 2"), "{e}");
        assert_quiet(&e);
        let no_equals = format!("A=1\n{CANARY}\n");
        assert_quiet(&refusal(no_equals.as_bytes()));
        // Only variables defined above may be expanded (a file never reads the environment).
        let undefined = format!("A=${{HOME}}{CANARY}\n");
        assert_quiet(&refusal(undefined.as_bytes()));
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_without_quoting_it() {
        let mut bytes = format!("OPENAI_API_KEY={CANARY}").into_bytes();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let e = refusal(&bytes);
        assert!(e.contains("not UTF-8"), "{e}");
        assert_quiet(&e);
    }

    #[test]
    fn a_value_too_large_is_refused_without_quoting_it() {
        let huge = format!(
            "OPENAI_API_KEY={CANARY}{}\n",
            "x".repeat(keyward::dotenv::MAX_VALUE)
        );
        let e = refusal(huge.as_bytes());
        assert!(e.contains("line 1"), "{e}");
        assert_quiet(&e);
    }

    #[test]
    fn later_files_win_and_origins_name_the_first() {
        let (_dir, paths) = files(&[
            b"OPENAI_API_KEY=sk-first\nLOG_LEVEL=debug\n",
            format!("OPENAI_API_KEY={CANARY}\n").as_bytes(),
        ]);
        let read = read(&paths, Some("team"), RULES).expect("read");
        assert_eq!(
            credentials(&read),
            [("openai", "team".to_owned(), Some(CANARY.to_owned()))]
        );
        let first = paths[0].display().to_string();
        assert!(
            said(&read)
                .lines()
                .all(|l| l.starts_with(&format!("{first}: "))),
            "{}",
            said(&read)
        );
        assert_quiet(&said(&read));
    }

    #[test]
    fn a_relative_service_account_file_is_read_beside_the_first_file() {
        let (dir, paths) = files(&[b"GOOGLE_APPLICATION_CREDENTIALS=sa.json\n"]);
        std::fs::write(dir.path().join("sa.json"), r#"{"type": "service_account"}"#)
            .expect("written");
        let read = read(&paths, None, RULES).expect("read");
        assert!(errors(&read).is_empty(), "{:?}", errors(&read));
        assert_eq!(
            credentials(&read),
            [(
                "vertex",
                "dotenv".to_owned(),
                Some(r#"{"type": "service_account"}"#.to_owned())
            )]
        );
    }

    #[test]
    fn a_name_that_is_not_a_credential_name_is_refused_after_the_files() {
        let (_dir, paths) = files(&[b"A=1\n"]);
        let e = read(&paths, Some(CANARY), RULES)
            .map(|_| ())
            .expect_err("refused");
        assert_quiet(&format!("{e:#}"));
        let missing = [PathBuf::from("/no/such/dir/.env")];
        let e = read(&missing, Some(CANARY), RULES)
            .map(|_| ())
            .expect_err("refused");
        assert!(format!("{e:#}").contains("cannot read env file"), "{e:#}");
    }
}
