//! Writing a tar archive of directory trees on a thread of its own: entries in a stable order,
//! mode, owner and mtime kept, symbolic links stored as links (never followed), excluded files
//! left out, and files that change while they are read stored consistently.

use std::collections::BTreeSet;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use tar::{EntryType, Header, HeaderMode};

/// What was archived, and what was not and why.
#[derive(Debug, Clone, Default)]
pub struct ArchiveReport {
    /// Regular files stored.
    pub files: u64,
    /// Directories stored.
    pub directories: u64,
    /// Symbolic links stored (as links).
    pub links: u64,
    /// Bytes of file content stored.
    pub content_bytes: u64,
    /// Things left out or stored differently, one line each: unreadable files, files that
    /// changed while read, special files.
    pub warnings: Vec<String>,
    /// Paths left out on purpose (the encryption key, the keyring).
    pub excluded: Vec<PathBuf>,
    /// Files, links and directories left out by the include/exclude globs.
    pub filtered: u64,
}

/// Include and exclude globs over full paths: `*` and `?` stay within one path component,
/// `**` crosses them (`/etc/**/*.conf`, `**/*.pem`). A path matching an exclude glob is left
/// out (a directory with everything under it); with include globs, only files and links
/// matching one are archived (directories are still walked).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    /// A filter of `include` and `exclude` globs (either may be empty).
    ///
    /// # Errors
    /// The first glob that does not parse, and why.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let set = |globs: &[String]| -> Result<Option<GlobSet>, String> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut builder = GlobSetBuilder::new();
            for glob in globs {
                let compiled = GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("{glob:?} is not a glob: {e}"))?;
                builder.add(compiled);
            }
            builder.build().map(Some).map_err(|e| e.to_string())
        };
        Ok(Self {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    fn excludes(&self, path: &Path) -> bool {
        self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }

    fn includes(&self, path: &Path) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(path))
    }
}

/// Files and directories never archived, by device and inode (so a second path or a hard
/// link to them is recognised too).
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    ids: BTreeSet<(u64, u64)>,
}

impl Exclusions {
    /// Excludes `path` (a file, or a directory with everything under it) when it exists.
    pub fn add(&mut self, path: &Path) {
        if let Ok(meta) = std::fs::metadata(path) {
            self.ids.insert((meta.dev(), meta.ino()));
        }
    }

    fn contains(&self, meta: &Metadata) -> bool {
        self.ids.contains(&(meta.dev(), meta.ino()))
    }
}

/// The name a configured path has in the archive: without its leading `/` (as GNU tar stores
/// absolute paths), so an extraction lands under the target directory.
pub fn archive_name(path: &Path) -> io::Result<PathBuf> {
    let mut name = PathBuf::new();
    for part in path.components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => name.push(p),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} contains '..'; give the path without it", path.display()),
                ))
            }
        }
    }
    if name.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file or directory to archive", path.display()),
        ));
    }
    Ok(name)
}

/// Archives every root (with everything under it) into `out`, then ends the archive.
pub fn write_archive<W: Write>(
    out: W,
    roots: &[PathBuf],
    exclusions: &Exclusions,
    filter: &Filter,
) -> io::Result<ArchiveReport> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut report = ArchiveReport::default();
    let skip = Skip { exclusions, filter };
    for root in roots {
        let name = archive_name(root)?;
        add_tree(&mut builder, root, &name, &skip, &mut report)?;
    }
    builder.into_inner()?.flush()?;
    Ok(report)
}

/// What is left out.
struct Skip<'a> {
    exclusions: &'a Exclusions,
    filter: &'a Filter,
}

fn add_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    skip: &Skip<'_>,
    report: &mut ArchiveReport,
) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            report.warnings.push(format!(
                "{}: cannot read it ({e}); left out",
                path.display()
            ));
            return Ok(());
        }
    };
    if skip.exclusions.contains(&meta) {
        tracing::info!(
            "{} left out of the archive: it is the encryption key or the keyring",
            path.display()
        );
        report.excluded.push(path.to_path_buf());
        return Ok(());
    }
    let file_type = meta.file_type();
    if skip.filter.excludes(path) || (!file_type.is_dir() && !skip.filter.includes(path)) {
        report.filtered += 1;
        return Ok(());
    }
    if file_type.is_symlink() {
        let target = std::fs::read_link(path)?;
        let mut header = header_for(&meta, EntryType::Symlink);
        builder.append_link(&mut header, name, &target)?;
        report.links += 1;
    } else if file_type.is_dir() {
        let mut header = header_for(&meta, EntryType::Directory);
        builder.append_data(&mut header, name, io::empty())?;
        report.directories += 1;
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                report.warnings.push(format!(
                    "{}: cannot list it ({e}); its contents are left out",
                    path.display()
                ));
                return Ok(());
            }
        };
        let mut children: Vec<_> = entries
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        children.sort();
        for child in children {
            add_tree(
                builder,
                &path.join(&child),
                &name.join(&child),
                skip,
                report,
            )?;
        }
    } else if file_type.is_file() {
        add_file(builder, path, name, report)?;
    } else {
        let what = if file_type.is_fifo() {
            "a named pipe"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        report
            .warnings
            .push(format!("{}: {what}, not archived", path.display()));
    }
    Ok(())
}

fn add_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    report: &mut ArchiveReport,
) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            report.warnings.push(format!(
                "{}: cannot read it ({e}); left out",
                path.display()
            ));
            return Ok(());
        }
    };
    // The size as of now, from the open file: the entry holds exactly this many bytes.
    let meta = file.metadata()?;
    let size = meta.len();
    let mut header = header_for(&meta, EntryType::Regular);
    header.set_size(size);
    let mut content = Exactly {
        file,
        left: size,
        padded: 0,
    };
    builder.append_data(&mut header, name, &mut content)?;
    if content.padded > 0 {
        report.warnings.push(format!(
            "{}: shrank while it was read; stored its first {} of {size} bytes, padded with \
             zeros",
            path.display(),
            size - content.padded
        ));
    } else if content.file.metadata().map(|m| m.len()).unwrap_or(size) > size {
        report.warnings.push(format!(
            "{}: grew while it was read (a live log?); stored its first {size} bytes",
            path.display()
        ));
    }
    report.files += 1;
    report.content_bytes += size;
    Ok(())
}

/// A header with the entry's mode, owner and mtime.
fn header_for(meta: &Metadata, kind: EntryType) -> Header {
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    header.set_entry_type(kind);
    if kind != EntryType::Regular {
        header.set_size(0);
    }
    header
}

/// Exactly `left` bytes of `file`: zeros when it ends early (counted in `padded`), nothing
/// beyond when it grew.
struct Exactly {
    file: File,
    left: u64,
    padded: u64,
}

impl Read for Exactly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = match self.file.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                self.padded += want as u64;
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_paths_with_single_and_double_stars() {
        let filter = Filter::new(
            &["/etc/**/*.conf".to_owned(), "**/*.pem".to_owned()],
            &["**/cache/**".to_owned(), "/etc/nginx/*.bak".to_owned()],
        )
        .unwrap();
        assert!(filter.includes(Path::new("/etc/nginx/nginx.conf")));
        assert!(filter.includes(Path::new("/etc/a.conf")));
        assert!(filter.includes(Path::new("/app/tls/key.pem")));
        assert!(!filter.includes(Path::new("/etc/nginx/mime.types")));
        assert!(filter.excludes(Path::new("/app/cache/x/y")));
        assert!(filter.excludes(Path::new("/etc/nginx/old.bak")));
        assert!(
            !filter.excludes(Path::new("/etc/nginx/sub/old.bak")),
            "* stays in one folder"
        );
        assert!(Filter::new(&["a[".to_owned()], &[])
            .unwrap_err()
            .contains("a["));
        let none = Filter::default();
        assert!(none.includes(Path::new("/x")) && !none.excludes(Path::new("/x")));
    }
}
