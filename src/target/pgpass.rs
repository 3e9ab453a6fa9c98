//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it.
//!
//! Format (libpq `passwordFromFile`): one `hostname:port:database:username:password` per
//! line; a field that is exactly `*` matches anything; `\:` and `\\` escape; lines
//! starting with `#` are comments; the first matching line wins. A file that is not a
//! plain file, or that gives any access to group or others, is ignored with a warning.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Secret;

/// A parsed password file.
#[derive(Clone)]
pub(crate) struct PassFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl fmt::Debug for PassFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassFile")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

#[derive(Clone)]
struct Entry {
    line: usize,
    /// hostname, port, database, username; `None` is the `*` wildcard.
    fields: [Option<Vec<u8>>; 4],
    password: Secret,
}

/// What reading a password file gave.
pub(crate) enum Loaded {
    /// No such file: nothing to say (libpq is silent too).
    Missing,
    /// The file was read.
    File(PassFile),
    /// The file exists but is not used; the text says why (shown as a warning).
    Ignored(String),
}

/// Read and parse the password file at `path`, refusing it when its permissions are too
/// open, as libpq does.
pub(crate) fn load(path: &Path) -> Loaded {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => {
            return Loaded::Ignored(format!(
                "password file \"{}\" cannot be read: {}",
                path.display(),
                super::io_error_text(&e)
            ));
        }
    };
    if !meta.is_file() {
        return Loaded::Ignored(format!(
            "password file \"{}\" is not a plain file",
            path.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Loaded::Ignored(format!(
                "password file \"{}\" has group or world access; permissions should be \
                 u=rw (0600) or less, so it is ignored (fix with: chmod 600 {})",
                path.display(),
                path.display()
            ));
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => Loaded::File(parse(path, &bytes)),
        Err(e) => Loaded::Ignored(format!(
            "password file \"{}\" cannot be read: {}",
            path.display(),
            super::io_error_text(&e)
        )),
    }
}

/// Parse the contents of a password file. Lines that do not have four `:`-terminated
/// fields can never match in libpq, so they are dropped.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> PassFile {
    let entries = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line[0] == b'#' {
                return None;
            }
            parse_line(line).map(|(fields, password)| Entry {
                line: i + 1,
                fields,
                password,
            })
        })
        .collect();
    PassFile {
        path: path.to_path_buf(),
        entries,
    }
}

type Fields = [Option<Vec<u8>>; 4];

fn parse_line(mut rest: &[u8]) -> Option<(Fields, Secret)> {
    let mut fields: Fields = Default::default();
    for field in &mut fields {
        if let Some(after) = rest.strip_prefix(b"*:") {
            rest = after;
            continue;
        }
        let mut value = Vec::new();
        let mut i = 0;
        loop {
            match rest.get(i) {
                None => return None,
                Some(b'\\') => {
                    value.push(*rest.get(i + 1)?);
                    i += 2;
                }
                Some(b':') => break,
                Some(b) => {
                    value.push(*b);
                    i += 1;
                }
            }
        }
        *field = Some(value);
        rest = &rest[i + 1..];
    }
    // The password runs to the next unescaped ':' or the end of the line.
    let mut password = Vec::new();
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        match b {
            b':' => break,
            b'\\' if i + 1 < rest.len() => {
                password.push(rest[i + 1]);
                i += 2;
            }
            _ => {
                password.push(b);
                i += 1;
            }
        }
    }
    Some((fields, Secret::from_bytes(password)))
}

impl PassFile {
    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The password of the first line matching these keys, and that line's number.
    pub(crate) fn lookup(
        &self,
        host: &str,
        port: &str,
        dbname: &str,
        user: &str,
    ) -> Option<(&Secret, usize)> {
        if dbname.is_empty() || user.is_empty() {
            return None;
        }
        let keys = [host, port, dbname, user];
        self.entries
            .iter()
            .find(|e| {
                e.fields
                    .iter()
                    .zip(keys)
                    .all(|(f, k)| f.as_deref().is_none_or(|f| f == k.as_bytes()))
            })
            .map(|e| (&e.password, e.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> PassFile {
        parse(Path::new("/x/.pgpass"), text.as_bytes())
    }

    fn pw(f: &PassFile, h: &str, p: &str, d: &str, u: &str) -> Option<(String, usize)> {
        f.lookup(h, p, d, u)
            .map(|(s, line)| (String::from_utf8_lossy(s.expose()).into_owned(), line))
    }

    #[test]
    fn first_match_wins_and_wildcards() {
        let f = file(
            "# comment line\n\
             db1:5432:app:audit:first\n\
             db1:*:*:audit:second\n\
             *:*:*:*:fallback\n",
        );
        assert_eq!(
            pw(&f, "db1", "5432", "app", "audit"),
            Some(("first".into(), 2))
        );
        assert_eq!(
            pw(&f, "db1", "6432", "app", "audit"),
            Some(("second".into(), 3))
        );
        assert_eq!(
            pw(&f, "db2", "5432", "x", "y"),
            Some(("fallback".into(), 4))
        );
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let f = file("h\\:x:5432:d\\\\b:u:pa\\:ss\\\\wd\\\nother:1:2:3:4");
        assert_eq!(
            pw(&f, "h:x", "5432", "d\\b", "u"),
            Some(("pa:ss\\wd\\".into(), 1))
        );
        // An escaped star is a literal star, not a wildcard.
        let f = file("\\*:*:*:*:lit\n");
        assert_eq!(pw(&f, "anyhost", "5432", "d", "u"), None);
        assert_eq!(pw(&f, "*", "5432", "d", "u"), Some(("lit".into(), 1)));
        // '*' only matters as a whole field.
        let f = file("*db:*:*:*:x\n");
        assert_eq!(pw(&f, "db", "5432", "d", "u"), None);
    }

    #[test]
    fn password_stops_at_next_colon_and_crlf_is_stripped() {
        let f = file("h:1:d:u:secret:extra\r\nh:2:d:u:crlf\r\n");
        assert_eq!(pw(&f, "h", "1", "d", "u"), Some(("secret".into(), 1)));
        assert_eq!(pw(&f, "h", "2", "d", "u"), Some(("crlf".into(), 2)));
    }

    #[test]
    fn short_and_empty_lines_never_match() {
        let f = file("\nh:1:d\nh:1:d:u\n#h:1:d:u:commented\n");
        assert_eq!(pw(&f, "h", "1", "d", "u"), None);
        // Empty password field matches with an empty password.
        let f = file("h:1:d:u:\n");
        assert_eq!(pw(&f, "h", "1", "d", "u"), Some((String::new(), 1)));
    }

    #[test]
    fn case_sensitive_like_libpq() {
        let f = file("DB1:5432:app:audit:x\n");
        assert_eq!(pw(&f, "db1", "5432", "app", "audit"), None);
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_enforced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "*:*:*:*:pw").unwrap();
        drop(f);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Loaded::File(p) if p.entries.len() == 1));

        for mode in [0o640, 0o604, 0o620, 0o610, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match load(&path) {
                Loaded::Ignored(w) => {
                    assert!(w.contains("group or world access"), "{w}");
                    assert!(!w.contains("pw\n"));
                }
                _ => panic!("mode {mode:o} must be refused"),
            }
        }

        assert!(matches!(load(&dir.path().join("nope")), Loaded::Missing));
        assert!(matches!(load(dir.path()), Loaded::Ignored(w) if w.contains("not a plain file")));
    }

    #[test]
    fn debug_does_not_show_passwords() {
        let f = file("h:1:d:u:topsecret\n");
        assert!(!format!("{f:?}").contains("topsecret"));
    }
}
