//! Files a command writes at a path the user names (`keyward backup FILE`). What is at the
//! path decides how it is written:
//!
//! - nothing, or a regular file: a private temporary file beside it (mode 0600), synced and
//!   renamed into place only when whole, so a failure leaves what was there;
//! - a symbolic link to a regular file: the same, for the file the link names (the link stays);
//! - a stream (`-` or `/dev/stdout` for standard output, a descriptor this process holds such
//!   as `/dev/fd/N`, a FIFO, a character device, a socket): written directly, since renaming over it would replace the device node itself
//!   (`keyward backup /dev/null` as root once turned `/dev/null` into a regular file);
//! - anything else (a directory, a block device): refused.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// Where the bytes go.
pub(crate) enum OutFile {
    /// Standard output (`-`).
    Stdout(std::io::Stdout),
    /// A stream opened for writing as it is.
    Stream(File, PathBuf),
    /// A temporary file renamed onto the path when finished.
    Replace(tempfile::NamedTempFile, PathBuf),
}

impl OutFile {
    /// Opens `path` for writing as its kind says (see the module's documentation).
    pub(crate) fn create(path: &Path) -> Result<Self> {
        use std::os::unix::fs::FileTypeExt as _;
        if path.as_os_str() == "-" || path.as_os_str() == "/dev/stdout" {
            return Ok(Self::Stdout(std::io::stdout()));
        }
        // A descriptor this process already holds (`/dev/stderr`, `/dev/fd/N`,
        // `/proc/self/fd/N`) is a stream whatever it leads to, even a regular file the shell
        // opened (`>> backup.kwb`): written at its end, never replaced.
        let descriptor = path.as_os_str() == "/dev/stderr"
            || path.starts_with("/dev/fd/")
            || path.starts_with("/proc/self/fd/");
        if descriptor {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(Self::Stream(file, path.to_owned()));
        }
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling link would be replaced by the file: refuse it rather than guess.
                if std::fs::symlink_metadata(path).is_ok() {
                    bail!("{shown} is a symbolic link to nothing; name the file itself");
                }
                None
            }
            Err(e) => return Err(e).with_context(|| format!("cannot write {shown}")),
        };
        match meta.map(|m| m.file_type()) {
            None => Self::replace(path.to_owned()),
            Some(t) if t.is_file() => {
                // Through a link, the file it names is replaced and the link kept.
                let real =
                    std::fs::canonicalize(path).with_context(|| format!("cannot write {shown}"))?;
                Self::replace(real)
            }
            Some(t) if t.is_fifo() || t.is_char_device() || t.is_socket() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("cannot write {shown}"))?;
                Ok(Self::Stream(file, path.to_owned()))
            }
            Some(t) if t.is_dir() => bail!("{shown} is a directory; name a file in it"),
            Some(_) => bail!(
                "{shown} is neither a regular file nor a stream (a FIFO, a terminal, `-` for \
                 standard output); refusing to replace it"
            ),
        }
    }

    fn replace(path: PathBuf) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // tempfile creates the file exclusively with mode 0600.
        let tmp = tempfile::Builder::new()
            .prefix(".keyward-")
            .suffix(".partial")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        Ok(Self::Replace(tmp, path))
    }

    /// Whether this is a stream (standard output, `/dev/stdout`, a FIFO, a device): then
    /// messages go to standard error, since standard output may be the stream itself.
    pub(crate) fn is_stream(&self) -> bool {
        matches!(self, Self::Stdout(_) | Self::Stream(..))
    }

    /// What to call it in messages.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Stdout(_) => "standard output".to_owned(),
            Self::Stream(_, p) | Self::Replace(_, p) => p.display().to_string(),
        }
    }

    /// Flushes and syncs what was written and, for a file, moves it into place.
    pub(crate) fn finish(self) -> Result<()> {
        match self {
            Self::Stdout(mut out) => Ok(out.flush()?),
            Self::Stream(mut f, _) => Ok(f.flush()?),
            Self::Replace(mut tmp, path) => {
                tmp.flush()?;
                tmp.as_file().sync_all()?;
                tmp.persist(&path).map_err(|e| e.error).with_context(|| {
                    format!("cannot move the file into place at {}", path.display())
                })?;
                Ok(())
            }
        }
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::Stream(f, _) => f.write(buf),
            Self::Replace(tmp, _) => tmp.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::Stream(f, _) => f.flush(),
            Self::Replace(tmp, _) => tmp.flush(),
        }
    }
}
