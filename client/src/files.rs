//! Writing files that may hold secrets (keys, client configurations); keywardd writes
//! its own files the same way.

use std::path::Path;

/// Writes `data` to `path` atomically with the given mode: a new temporary file in the
/// same directory (created exclusively, mode 0600 until it is complete), synced, then
/// renamed over `path`, so that an existing file with looser permissions, or a planted
/// symlink, is replaced rather than written through.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".keyward-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
