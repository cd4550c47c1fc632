//! Files the daemon writes: atomically, through a fresh temporary file (O_EXCL, so a
//! planted file or symlink is never written through), with the mode set explicitly
//! whatever the umask; private directories 0700; and the refusal of directories that
//! someone else owns or may write.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why a file or directory could not be written or trusted.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The filesystem failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The directory cannot be trusted with secrets.
    #[error("{0}")]
    Untrusted(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FileError {
    let what = what.into();
    move |source| FileError::Io { what, source }
}

/// Writes `data` to `path` atomically with the given mode (see
/// [`keyward_client::files::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    keyward_client::files::write_atomic(path, data, mode)
        .map_err(io(format!("cannot write {}", path.display())))
}

/// Creates `dir` (and its parents) if needed and makes it 0700.
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot restrict {}", dir.display())))
}

/// Makes every directory under `dir` (itself included) 0700 and every file 0600, so
/// that state written under a loose umask is readable by the daemon's user only.
pub fn restrict_tree(dir: &Path) -> Result<(), FileError> {
    private_dir(dir)?;
    let entries = std::fs::read_dir(dir).map_err(io(format!("cannot read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot read {}", dir.display())))?;
        let kind = entry
            .file_type()
            .map_err(io(format!("cannot read {}", entry.path().display())))?;
        if kind.is_dir() {
            restrict_tree(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                .map_err(io(format!("cannot restrict {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// The effective user id of this process (the owner of `/proc/self`).
fn effective_uid() -> Result<u32, FileError> {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(io("cannot determine this process's user (/proc/self)"))
}

/// Refuses an existing directory that this user does not own or that others may
/// write: whoever controls it could read the secrets written there or plant files.
pub fn check_trusted_dir(dir: &Path) -> Result<(), FileError> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(io(format!("cannot inspect {}", dir.display())))?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Untrusted(format!(
            "{} is a symbolic link; give the real directory",
            dir.display()
        )));
    }
    if !meta.is_dir() {
        return Err(FileError::Untrusted(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let me = effective_uid()?;
    if meta.uid() != me {
        return Err(FileError::Untrusted(format!(
            "{} belongs to user id {}, not to this user ({me}): whoever owns it could read the PINs and keys written there. Use a directory of your own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(FileError::Untrusted(format!(
            "{} may be written by other users (mode {:o}): they could plant files there. Use a new directory, or chmod go-w it",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_never_follows_a_planted_symlink_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("pin");
        std::os::unix::fs::symlink(&victim, dir.path().join("pin.tmp")).unwrap();
        write_atomic(&target, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Overwriting a loose file leaves a tight one.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&target, b"again", 0o600).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_directory_others_may_write_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        check_trusted_dir(dir.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_trusted_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("may be written by other users"), "{err}");
    }
}
