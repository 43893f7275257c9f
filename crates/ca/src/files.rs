//! The CA directory on disk: bounded reads, and creation of a whole directory at once.
//!
//! A CA directory is never left half-written: every file is written into a fresh sibling
//! directory (mode 0700, files 0600, each fsynced), which is then renamed into place. The rename
//! is atomic, so a crash leaves either no CA or a complete one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest file read: CA files, CSRs, certificate chains (1 MiB is far beyond any real one).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A CA directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file is larger than any CA file could be.
    #[error("{} is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The target directory already holds files.
    #[error("{} already exists and is not empty", path.display())]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// Writing the new directory failed; nothing was left at the target.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Reads a whole file, refusing anything over [`MAX_FILE_BYTES`] before reading it.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, FilesError> {
    let read_err = |source| FilesError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(FilesError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(buf)
}

/// Whether `dir` is missing or an empty directory (so it can receive a new CA).
pub(crate) fn is_vacant(dir: &Path) -> Result<bool, FilesError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(FilesError::Read {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Creates `dir` holding exactly `files` (name, contents), all mode 0600, atomically.
pub(crate) fn create_dir_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), FilesError> {
    if !is_vacant(dir)? {
        return Err(FilesError::NotEmpty {
            path: dir.to_owned(),
        });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .map_or_else(|| "ca".into(), |n| n.to_string_lossy());
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    let result = write_staging(&staging, files).and_then(|()| {
        // rename(2) replaces an empty directory atomically, and creates a missing one.
        fs::rename(&staging, dir).map_err(|source| FilesError::Write {
            path: dir.to_owned(),
            source,
        })?;
        sync_dir(&parent)
    });
    if result.is_err() {
        // Best effort: the staging directory is ours and holds nothing anyone relies on.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Replaces one file atomically with mode 0600: a temporary sibling, fsync, rename, fsync of
/// the directory. A crash leaves the old content or the new, never half of either.
pub(crate) fn write_file_atomically(path: &Path, contents: &[u8]) -> Result<(), FilesError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FilesError::Write { path, source }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err(&tmp))?;
        file.write_all(contents).map_err(write_err(&tmp))?;
        file.sync_all().map_err(write_err(&tmp))?;
        fs::rename(&tmp, path).map_err(write_err(path))?;
        sync_dir(&parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_staging(staging: &Path, files: &[(&str, &[u8])]) -> Result<(), FilesError> {
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| FilesError::Write { path, source }
    };
    DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(write_err(staging))?;
    for (name, contents) in files {
        let path = staging.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(write_err(&path))?;
        file.write_all(contents).map_err(write_err(&path))?;
        file.sync_all().map_err(write_err(&path))?;
    }
    sync_dir(staging)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), FilesError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| FilesError::Write {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_a_private_directory_in_one_step() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        create_dir_atomically(&dir, &[("a.pem", b"A"), ("b.pem", b"B")]).unwrap();
        assert_eq!(fs::read(dir.join("a.pem")).unwrap(), b"A");
        let mode = fs::metadata(dir.join("b.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // No staging directory left behind.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn fills_an_empty_directory_but_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        create_dir_atomically(tmp.path(), &[("a.pem", b"A")]).unwrap();
        let err = create_dir_atomically(tmp.path(), &[("a.pem", b"X")]).unwrap_err();
        assert!(matches!(err, FilesError::NotEmpty { .. }), "{err}");
        assert_eq!(fs::read(tmp.path().join("a.pem")).unwrap(), b"A");
    }

    #[test]
    fn leaves_nothing_when_a_write_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        // A file name with a slash cannot be created inside the staging directory.
        let err = create_dir_atomically(&dir, &[("a.pem", b"A"), ("x/y.pem", b"B")]).unwrap_err();
        assert!(matches!(err, FilesError::Write { .. }), "{err}");
        assert!(!dir.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn refuses_oversized_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.pem");
        fs::write(&path, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            read_bounded(&path),
            Err(FilesError::TooLarge { .. })
        ));
        let err = read_bounded(&tmp.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
