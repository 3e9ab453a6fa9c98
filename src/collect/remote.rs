//! How the host collectors (`host`, `sockets`, `firewall`) reach the machine PostgreSQL
//! runs on: [`Local`] (this machine, plain system calls) or [`Ssh`] (another machine, or
//! this one when asked, through the system OpenSSH client).
//!
//! The collectors only see [`HostAccess`]; the parsing is the same both ways.
//!
//! [`Ssh`] runs one `ssh` process for the whole collection (BatchMode, a connect timeout,
//! the user's `~/.ssh/config` and `--ssh-option`s), whose remote command is a small POSIX
//! shell loop: pgready writes one request per line (a command with every argument
//! single-quoted), the loop answers each with a header line (`\x01PGREADY rc out-bytes
//! err-bytes`) followed by the command's stdout and stderr, read back in full, so binary
//! files (`/proc/<pid>/environ`) come through unchanged. Every request has a deadline; a
//! request that misses it ends the session and every later request fails with the reason.

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The numbers of statvfs(3) the host facts use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Fragment size (the unit of the block counts).
    pub frsize: i64,
    pub blocks: i64,
    pub bfree: i64,
    /// Free blocks available to unprivileged users.
    pub bavail: i64,
    pub files: i64,
    pub ffree: i64,
}

/// What stat(2) gives the host facts: the raw `st_dev` and `st_rdev` (glibc's `dev_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub rdev: u64,
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// File and command access to the database host.
pub trait HostAccess {
    /// The file's bytes.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The file as UTF-8 text.
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
    /// The target of a symbolic link.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The absolute path with every link resolved; the path must exist.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// The names in a folder (without `.` and `..`).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether the path exists (following links).
    fn exists(&self, path: &Path) -> bool;
    /// stat(2), following links.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// statvfs(3).
    fn statvfs(&self, path: &Path) -> Result<FsStats, String>;
    /// Run `cmd args…` (found on the PATH), waiting at most `timeout` where the access
    /// can bound it. `Err` with `NotFound` when the command does not exist.
    fn run(&self, cmd: &str, args: &[&str], timeout: Duration) -> io::Result<Output>;
    /// The operating system, as `std::env::consts::OS` names it (`linux`).
    fn os(&self) -> String;
    /// The number of CPUs the host offers a process, when nothing better is known.
    fn available_parallelism(&self) -> Option<i64>;
    /// `None` for this machine as pgready runs; for SSH, the remote user and whether it
    /// is root.
    fn remote_user(&self) -> Option<(&str, bool)> {
        None
    }
    /// Where the facts come from: `local`, or `ssh://user@host:port`.
    fn source(&self) -> String;
    /// How a fact that needs more privileges can be read ("run pgready as …").
    fn privilege_hint(&self) -> String {
        "run pgready as the postgres OS user or root".to_string()
    }
    /// Why the access stopped working during the collection (facts read after it are
    /// unknown, not absent).
    fn failure(&self) -> Option<String> {
        None
    }
    /// Whose cgroup and affinity are read when the postmaster is unknown.
    fn self_name(&self) -> &'static str {
        "pgready"
    }
}

/// This machine, as pgready runs (the behaviour of the collectors before SSH existed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl HostAccess for Local {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        Ok(std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path)?;
        Ok(Meta {
            dev: m.dev(),
            rdev: m.rdev(),
        })
    }
    fn statvfs(&self, path: &Path) -> Result<FsStats, String> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt as _;
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized, zeroed
        // struct that statvfs fills; nothing is kept beyond the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        Ok(FsStats {
            frsize: st.f_frsize as i64,
            blocks: st.f_blocks as i64,
            bfree: st.f_bfree as i64,
            bavail: st.f_bavail as i64,
            files: st.f_files as i64,
            ffree: st.f_ffree as i64,
        })
    }
    fn run(&self, cmd: &str, args: &[&str], _timeout: Duration) -> io::Result<Output> {
        let out = Command::new(cmd).args(args).output()?;
        Ok(Output {
            success: out.status.success(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
    fn os(&self) -> String {
        std::env::consts::OS.to_string()
    }
    fn available_parallelism(&self) -> Option<i64> {
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as i64)
    }
    fn source(&self) -> String {
        "local".to_string()
    }
}

// ------------------------------------------------------------------ --host ssh://…

/// A parsed `--host ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    /// A name or an address (IPv6 without its brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

const HOST_FORM: &str =
    "expected ssh://[user@]host[:port], e.g. ssh://root@db1 or ssh://postgres@10.0.0.5:2222";

impl std::str::FromStr for SshTarget {
    type Err = String;

    /// Parse `ssh://[user@]host[:port]`. The message never repeats a password.
    fn from_str(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix("ssh://") else {
            return Err(format!("`{s}` is not an SSH address: {HOST_FORM}"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if let Some(u) = user {
            if u.contains(':') {
                return Err(format!(
                    "a password in the SSH address is not supported (pgready never sends one): \
                     use a key (--ssh-option IdentityFile=…); {HOST_FORM}"
                ));
            }
            if u.is_empty()
                || !u
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(format!(
                    "`{s}`: the user name `{u}` is not valid; {HOST_FORM}"
                ));
            }
        }
        let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
            let (h, tail) = after
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: `[` without `]`; {HOST_FORM}"))?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| format!("`{s}`: `{t}` after `]`; {HOST_FORM}"))?,
                ),
            };
            (h, port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty()
            || host.starts_with('-')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c))
        {
            return Err(format!("`{s}`: no valid host name or address; {HOST_FORM}"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("`{s}`: `{p}` is not a port (1-65535); {HOST_FORM}")),
            },
        };
        Ok(SshTarget {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        })
    }
}

/// clap's parser for `--host`: the message is pgready's own, without the value (it may
/// hold a password).
#[derive(Debug, Clone, Copy)]
pub struct SshTargetParser;

impl clap::builder::TypedValueParser for SshTargetParser {
    type Value = SshTarget;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SshTarget, clap::Error> {
        let text = value.to_str().unwrap_or("");
        text.parse().map_err(|e: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--host: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Check one `--ssh-option` (`KEY=VALUE`, as ssh_config(5) spells the key).
pub fn check_ssh_option(opt: &str) -> Result<String, String> {
    let Some((k, v)) = opt.split_once('=') else {
        return Err(format!(
            "ssh option `{opt}` must be KEY=VALUE, e.g. IdentityFile=/root/.ssh/id_ed25519"
        ));
    };
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) || v.contains('\n') {
        return Err(format!(
            "ssh option `{opt}`: `{k}` is not an ssh_config(5) keyword (KEY=VALUE, e.g. Port=2222)"
        ));
    }
    Ok(opt.to_string())
}

/// Seconds ssh waits for the connection (and the first answer).
const CONNECT_TIMEOUT_S: u64 = 10;
/// Deadline of one file request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The loop the remote shell runs (POSIX sh): one request per line, evaluated with its
/// output captured, answered by a header and the captured bytes.
/// It works in a private temporary folder (requests use absolute paths), so one `wc` gives
/// both sizes.
const REMOTE_LOOP: &str = r#"t=$(mktemp -d 2>/dev/null || { d=/tmp/pgready.$$; mkdir -m 700 "$d" && echo "$d"; }) || exit 97
trap 'rm -rf "$t"' EXIT
trap 'exit 1' HUP INT TERM
cd "$t" || exit 97
while IFS= read -r line; do
  eval "$line" >o 2>e </dev/null
  rc=$?
  set -- $(wc -c o e)
  printf '\001PGREADY %s %s %s\n' "$rc" "$1" "$3"
  cat o e
done"#;

/// One answer of the remote loop.
struct Frame {
    rc: i32,
    out: Vec<u8>,
    err: Vec<u8>,
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<Frame>,
    /// Why the session can no longer be used.
    broken: Option<String>,
}

/// The database host over SSH.
pub struct Ssh {
    target: SshTarget,
    session: Mutex<Session>,
    stderr: Arc<Mutex<Vec<u8>>>,
    user: String,
    root: bool,
    os: String,
    cpus: Option<i64>,
}

/// Single-quote `s` for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The remote command's error as an `io::Error`, with the OS error a local call would
/// give when the message names one (so reasons read the same both ways).
fn remote_error(stderr: &[u8]) -> io::Error {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    for (msg, code) in [
        ("No such file or directory", libc::ENOENT),
        ("Permission denied", libc::EACCES),
        ("Not a directory", libc::ENOTDIR),
        ("Invalid argument", libc::EINVAL),
        ("Operation not permitted", libc::EPERM),
        ("Too many levels of symbolic links", libc::ELOOP),
    ] {
        if text.contains(msg) {
            return io::Error::from_raw_os_error(code);
        }
    }
    io::Error::other(if text.is_empty() {
        "failed without a message".to_string()
    } else {
        text.to_string()
    })
}

fn path_arg(path: &Path) -> io::Result<String> {
    let s = path
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"))?;
    if s.contains(['\n', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path holds a newline",
        ));
    }
    Ok(sq(s))
}

impl Ssh {
    /// Start the session and learn who and where it is. `options` are `KEY=VALUE` for
    /// `ssh -o` (checked with [`check_ssh_option`]); they win over pgready's defaults,
    /// except BatchMode, which is always on (no prompt, ever).
    pub fn connect(target: &SshTarget, options: &[String]) -> Result<Ssh, String> {
        let mut cmd = Command::new("ssh");
        cmd.args(["-o", "BatchMode=yes"]);
        for o in options {
            cmd.arg("-o").arg(o);
        }
        let connect_timeout = format!("ConnectTimeout={CONNECT_TIMEOUT_S}");
        for o in [
            connect_timeout.as_str(),
            "ServerAliveInterval=5",
            "ServerAliveCountMax=2",
            "LogLevel=ERROR",
            "ControlMaster=no",
            "ControlPath=none",
            // pgready's own command, not one from ssh_config.
            "RemoteCommand=none",
        ] {
            cmd.args(["-o", o]);
        }
        cmd.args(["-T", "-x", "-a"]);
        if let Some(p) = target.port {
            cmd.args(["-p", &p.to_string()]);
        }
        if let Some(u) = &target.user {
            cmd.args(["-l", u]);
        }
        cmd.arg("--")
            .arg(&target.host)
            .arg(format!("exec /bin/sh -c {}", sq(REMOTE_LOOP)));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let who = target.display_host();
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "cannot reach {who} over SSH: the ssh client is not installed (apt-get install openssh-client)"
                )
            } else {
                format!("cannot reach {who} over SSH: cannot run ssh: {e}")
            }
        })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(err_pipe)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot reach {who} over SSH: no pipes to ssh"));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut pipe = err_pipe;
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = stderr.lock()
                        && s.len() < 64 * 1024
                    {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // Anything before a header (a shell start-up file's output) is skipped.
                let Some(head) = line.strip_prefix(b"\x01PGREADY ") else {
                    continue;
                };
                let head = String::from_utf8_lossy(head);
                let n: Vec<i64> = head
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                let [rc, olen, elen] = n[..] else { break };
                let mut out = vec![0u8; usize::try_from(olen).unwrap_or(0)];
                let mut err = vec![0u8; usize::try_from(elen).unwrap_or(0)];
                if r.read_exact(&mut out).is_err() || r.read_exact(&mut err).is_err() {
                    break;
                }
                let rc = i32::try_from(rc).unwrap_or(-1);
                if tx.send(Frame { rc, out, err }).is_err() {
                    break;
                }
            }
        });
        let mut ssh = Ssh {
            target: target.clone(),
            session: Mutex::new(Session {
                child,
                stdin,
                frames,
                broken: None,
            }),
            stderr,
            user: String::new(),
            root: false,
            os: String::new(),
            cpus: None,
        };
        let hello = ssh
            .request(
                "id -u; id -un; uname -s; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN",
                Duration::from_secs(CONNECT_TIMEOUT_S + 5),
            )
            .map_err(|e| ssh.connect_error(&e.to_string()))?;
        let text = String::from_utf8_lossy(&hello.out).into_owned();
        let mut lines = text.lines().map(str::trim);
        let uid = lines.next().unwrap_or("");
        ssh.root = uid == "0";
        ssh.user = lines.next().unwrap_or("").to_string();
        ssh.os = lines.next().unwrap_or("").to_ascii_lowercase();
        ssh.cpus = lines.next().and_then(|n| n.parse().ok());
        if uid.is_empty() || ssh.user.is_empty() {
            return Err(format!(
                "cannot use {who} over SSH: the remote shell did not say who it runs as \
                 (is /bin/sh a POSIX shell there?)"
            ));
        }
        Ok(ssh)
    }

    /// The error of a session that did not start, with ssh's own message and what to do.
    fn connect_error(&self, why: &str) -> String {
        let who = self.target.display_host();
        let stderr = self
            .stderr
            .lock()
            .map(|s| String::from_utf8_lossy(&s).trim().to_string())
            .unwrap_or_default();
        let msg = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map_or_else(|| why.to_string(), str::to_string);
        let user = self
            .target
            .user
            .as_ref()
            .map_or_else(|| "the SSH user".to_string(), |u| format!("user {u}"));
        let hint = if msg.contains("Permission denied") {
            format!("check the key for {user}: ~/.ssh/config, or --ssh-option IdentityFile=…")
        } else if msg.contains("Host key verification failed")
            || msg.contains("REMOTE HOST IDENTIFICATION")
        {
            format!(
                "add the host key of {who} to known_hosts (ssh-keyscan), or --ssh-option UserKnownHostsFile=…"
            )
        } else if msg.contains("Could not resolve") {
            "check the host name in --host".to_string()
        } else {
            format!(
                "check that `ssh -o BatchMode=yes {}` works from this machine",
                self.target
            )
        };
        format!("cannot reach {who} over SSH: {msg} ({hint})")
    }

    /// Send one request and wait for its answer.
    fn request(&self, line: &str, timeout: Duration) -> io::Result<Frame> {
        let mut s = self
            .session
            .lock()
            .map_err(|_| io::Error::other("the SSH session is unusable"))?;
        if let Some(why) = &s.broken {
            return Err(io::Error::other(why.clone()));
        }
        let sent = match s.stdin.as_mut() {
            Some(w) => w
                .write_all(line.as_bytes())
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush()),
            None => Err(io::Error::other("closed")),
        };
        let answer = match sent {
            Ok(()) => s.frames.recv_timeout(timeout),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        match answer {
            Ok(f) => Ok(f),
            Err(e) => {
                let why = match e {
                    RecvTimeoutError::Timeout => format!(
                        "the SSH session to {} gave no answer within {} s",
                        self.target.display_host(),
                        timeout.as_secs()
                    ),
                    RecvTimeoutError::Disconnected => {
                        // Let ssh finish writing its message.
                        let _ = s.child.try_wait();
                        std::thread::sleep(Duration::from_millis(50));
                        format!("the SSH session to {} ended", self.target.display_host())
                    }
                };
                let _ = s.child.kill();
                let _ = s.child.wait();
                s.broken = Some(why.clone());
                Err(io::Error::other(why))
            }
        }
    }

    /// Run a request whose failure is an `io::Error` (file access).
    fn file_request(&self, line: &str) -> io::Result<Vec<u8>> {
        let f = self.request(line, REQUEST_TIMEOUT)?;
        if f.rc == 0 {
            Ok(f.out)
        } else {
            Err(remote_error(&f.err))
        }
    }

    fn text_request(&self, line: &str) -> io::Result<String> {
        let out = self.file_request(line)?;
        Ok(String::from_utf8_lossy(&out)
            .trim_end_matches('\n')
            .to_string())
    }
}

impl SshTarget {
    /// `host` or `host:port`, for messages.
    pub fn display_host(&self) -> String {
        match self.port {
            Some(p) if self.host.contains(':') => format!("[{}]:{p}", self.host),
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if let Ok(mut s) = self.session.lock() {
            // End of input ends the remote loop; ssh then exits. Bounded: kill after 2 s.
            drop(s.stdin.take());
            for _ in 0..40 {
                if matches!(s.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

impl HostAccess for Ssh {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.file_request(&format!("cat -- {}", path_arg(path)?))
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        self.text_request(&format!("readlink -v -- {}", path_arg(path)?))
            .map(PathBuf::from)
    }
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        self.text_request(&format!("realpath -e -- {}", path_arg(path)?))
            .map(PathBuf::from)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let text = self.text_request(&format!("ls -1A -- {}", path_arg(path)?))?;
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn exists(&self, path: &Path) -> bool {
        path_arg(path)
            .and_then(|p| self.file_request(&format!("test -e {p}")))
            .is_ok()
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let text = self.text_request(&format!("stat -L -c '%d %r' -- {}", path_arg(path)?))?;
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(dev)), Some(Ok(rdev))) => Ok(Meta { dev, rdev }),
            _ => Err(io::Error::other(format!("unexpected stat output `{text}`"))),
        }
    }
    fn statvfs(&self, path: &Path) -> Result<FsStats, String> {
        // coreutils stat -f: %S fundamental block size (f_frsize), %b blocks, %f free,
        // %a available to non-root, %c inodes, %d free inodes.
        let p = path_arg(path).map_err(|e| e.to_string())?;
        let text = self
            .text_request(&format!("stat -f -c '%S %b %f %a %c %d' -- {p}"))
            .map_err(|e| e.to_string())?;
        let n: Vec<i64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [frsize, blocks, bfree, bavail, files, ffree] = n[..] else {
            return Err(format!("unexpected `stat -f` output `{text}`"));
        };
        Ok(FsStats {
            frsize,
            blocks,
            bfree,
            bavail,
            files,
            ffree,
        })
    }
    fn run(&self, cmd: &str, args: &[&str], timeout: Duration) -> io::Result<Output> {
        // A subshell: its `exit` ends the command, not the session.
        let mut line = format!(
            "(command -v {} >/dev/null || exit 127; exec {}",
            sq(cmd),
            sq(cmd)
        );
        for a in args {
            if a.contains(['\n', '\0']) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "newline in an argument",
                ));
            }
            line.push(' ');
            line.push_str(&sq(a));
        }
        line.push(')');
        let f = self.request(&line, timeout)?;
        if f.rc == 127 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{cmd} is not installed on {}", self.target.display_host()),
            ));
        }
        Ok(Output {
            success: f.rc == 0,
            stdout: f.out,
            stderr: f.err,
        })
    }
    fn os(&self) -> String {
        self.os.clone()
    }
    fn available_parallelism(&self) -> Option<i64> {
        self.cpus
    }
    fn remote_user(&self) -> Option<(&str, bool)> {
        Some((&self.user, self.root))
    }
    fn source(&self) -> String {
        let mut t = self.target.clone();
        if t.user.is_none() {
            t.user = Some(self.user.clone());
        }
        t.to_string()
    }
    fn privilege_hint(&self) -> String {
        format!(
            "ssh as the postgres OS user or root instead of {}",
            self.user
        )
    }
    fn self_name(&self) -> &'static str {
        "pgready's SSH session"
    }
    fn failure(&self) -> Option<String> {
        match self.session.lock() {
            Ok(s) => s.broken.clone(),
            Err(_) => Some("the SSH session is unusable".to_string()),
        }
    }
}

/// Say in every `*_source` string of `v` (recursively) that the fact came over SSH, for a
/// remote access; nothing changes for [`Local`].
pub fn mark_sources(v: &mut Value, a: &dyn HostAccess) {
    if a.remote_user().is_none() {
        return;
    }
    let suffix = format!(" (over SSH: {})", a.source());
    fn walk(v: &mut Value, suffix: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        Value::String(s) if k.ends_with("_source") => s.push_str(suffix),
                        _ => walk(x, suffix),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, suffix)),
            _ => {}
        }
    }
    walk(v, &suffix);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_addresses() {
        let t: SshTarget = "ssh://root@db1:2222"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t,
            SshTarget {
                user: Some("root".into()),
                host: "db1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(t.to_string(), "ssh://root@db1:2222");
        let t: SshTarget = "ssh://[::1]:22/".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_deref()),
            ("::1", Some(22), None)
        );
        assert_eq!(t.to_string(), "ssh://[::1]:22");
        let t: SshTarget = "ssh://db1.example.com"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port), ("db1.example.com", None));
        for bad in [
            "db1",
            "http://db1",
            "ssh://",
            "ssh://root@",
            "ssh://db1:0",
            "ssh://db1:99999",
            "ssh://db1:x",
            "ssh://-oProxyCommand=x",
            "ssh://a b",
            "ssh://[::1",
        ] {
            assert!(bad.parse::<SshTarget>().is_err(), "{bad}");
        }
        let e = "ssh://root:s3cret@db1"
            .parse::<SshTarget>()
            .err()
            .unwrap_or_default();
        assert!(e.contains("password") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn checks_ssh_options() {
        assert!(check_ssh_option("IdentityFile=/k").is_ok());
        assert!(check_ssh_option("IdentityFile").is_err());
        assert!(check_ssh_option("-x=1").is_err());
    }

    #[test]
    fn quotes_and_maps_errors() {
        assert_eq!(sq("a'b"), r"'a'\''b'");
        let e = remote_error(b"cat: /x: No such file or directory\n");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            io::Error::from_raw_os_error(libc::ENOENT).to_string()
        );
        assert!(remote_error(b"odd").to_string().contains("odd"));
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn host_table_of_pgready_toml() {
        let c = Config::parse(
            Path::new("pgready.toml"),
            "[host]\nssh = \"ssh://postgres@db1:2222\"\nssh_options = [\"IdentityFile=/k\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.host.ssh.map(|t| t.to_string()).as_deref(),
            Some("ssh://postgres@db1:2222")
        );
        assert_eq!(c.host.ssh_options, ["IdentityFile=/k"]);
        for bad in [
            "[host]\nssh = \"db1\"\n",
            "[host]\nssh_options = [\"Port\"]\n",
            "[host]\nuser = \"x\"\n",
        ] {
            let e = Config::parse(Path::new("pgready.toml"), bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("pgready.toml:"), "{bad}: {e}");
        }
    }
}
