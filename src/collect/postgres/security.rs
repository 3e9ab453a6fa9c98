//! Security facts beyond the catalog basics: how each pg_hba.conf line is exposed (`hba`
//! annotations), what every role can reach through memberships (`memberships`), stored
//! password verifiers tried offline against weak candidates (`password_checks`), and the
//! per-database facts read over the one session the collector opens on each database
//! (`databases[].security`: public schema, SECURITY DEFINER functions, untrusted
//! languages, row-level security, default privileges, object owners).
//!
//! # Password verifiers never leave this module
//!
//! `pg_authid.rolpassword` is read only by a superuser session, and only when that
//! session is private: TLS, a Unix socket or loopback (verifiers are password
//! equivalents for MD5 and offline-attackable for SCRAM; pgready does not pull them over
//! clear-text TCP). Each verifier is compared here with locally computed ones for the
//! role's own name and [`COMMON_PASSWORDS`]; only the verdict per role ("equals role
//! name", "common password" or null) is kept — never the hash, nor which candidate
//! matched. Nothing is sent to the server but the `SELECT`.
//!
//! # What was verified, and where
//!
//! "live" = run on sandbox servers 14.23, 15.18 (Debian), 16.14, 17.10 and 18.4.
//!
//! | fact | 14 | 15 | 16 | 17 | 18 | source |
//! |---|---|---|---|---|---|---|
//! | SCRAM verifier `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`; SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt, iter), StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key")) | ✓ | ✓ | ✓ | ✓ | ✓ | `src/common/scram-common.c` (`scram_build_secret`/`scram_build_verifier`, `scram_SaltedPassword`, `scram_ClientKey`, `scram_H`); live: verifiers of roles with known passwords matched (tests) |
//! | SASLprep of the password before hashing, raw bytes when it fails (not UTF-8, prohibited characters) | ✓ | ✓ | ✓ | ✓ | ✓ | `pg_saslprep()` use in `auth-scram.c` `pg_be_scram_build_secret`; same rule in rust-postgres `postgres-protocol` |
//! | MD5 verifier = `md5` ‖ hex(md5(password ‖ rolname)) | ✓ | ✓ | ✓ | ✓ | ✓ | live (`rolpassword = 'md5' \|\| md5('t_a' \|\| 't_a')` true on 14, 15, 16, 18) |
//! | no predefined role grants reading `pg_authid` (`pg_read_authid` does not exist) | ✓ | ✓ | ✓ | ✓ | ✓ | live (`pg_roles` has no such role on any major) |
//! | `pg_has_role(…, 'MEMBER')` true even for a 16+ grant `WITH SET FALSE, INHERIT FALSE`; mode `SET` only 16+ (`unrecognized privilege type` before) | — | — | ✓ | ✓ | ✓ | live |
//! | `pg_auth_members.inherit_option`, `.set_option` | — | — | ✓ | ✓ | ✓ | live; docs catalog-pg-auth-members 16+ |
//! | `public` schema ACL: `{postgres=UC/postgres,=UC/postgres}` (PUBLIC CREATE) up to 14; `{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}` from 15 | UC | U | U | U | U | live (`aclexplode(coalesce(nspacl, acldefault('n', nspowner)))`) |
//! | extension members: `pg_depend` rows with `deptype = 'e'`, `refclassid = pg_extension` | ✓ | ✓ | ✓ | ✓ | ✓ | live (plpgsql, pg_stat_statements, pltclu members); docs catalog-pg-depend |
//! | untrusted PL: `lanispl AND NOT lanpltrusted` (`c`/`internal` have `lanispl` false); GRANT/REVOKE on one is refused: only superusers use it | ✓ | ✓ | ✓ | ✓ | ✓ | live (`GRANT USAGE ON LANGUAGE pltclu` → "GRANT and REVOKE are not allowed on untrusted languages, because only superusers can use untrusted languages") |
//! | `pg_class.relrowsecurity`, `.relforcerowsecurity`; `pg_policy.polpermissive`, `polroles` (`{0}` = PUBLIC), `polcmd`, `polqual`, `polwithcheck` | ✓ | ✓ | ✓ | ✓ | ✓ | live; docs catalog-pg-policy |
//! | `pg_default_acl` (`defaclrole`, `defaclnamespace` 0 = global, `defaclobjtype` r/S/f/T/n, L from 18) | ✓ | ✓ | ✓ | ✓ | ✓ (+L) | live; docs catalog-pg-default-acl; release-18 (large-object default privileges) |
//! | every catalog read here is readable by any role (no REVOKE): `pg_policy`, `pg_proc.proconfig`/`proacl`, `pg_language`, `pg_default_acl`, `pg_auth_members` | ✓ | ✓ | ✓ | ✓ | ✓ | live, as a role with no predefined role (`has_table_privilege`) |

use std::net::IpAddr;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest as _, Md5};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio_postgres::{Client, Row};

use super::{Probe, col, pg_error};
use crate::facts::{Facts, Section};

// ---------------------------------------------------------------- hba annotations

/// Is every address of `ip/prefix` a loopback address (127.0.0.0/8, ::1/128, or
/// ::ffff:127.0.0.0/104)?
fn loopback_range(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(v4) => prefix >= 8 && v4.octets()[0] == 127,
        IpAddr::V6(v6) => {
            (prefix == 128 && v6.is_loopback())
                || (prefix >= 104 && v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 127))
        }
    }
}

/// Where the clients of one hba line can come from: `local` (Unix socket), `loopback`
/// (this host only: a loopback range, the host name `localhost`, or `samehost` — the
/// server's own addresses, which only a client on this host can use as its source), or
/// `network` (anything else, `samenet` and other host names included). `None` for a
/// line with an error (no type).
pub(crate) fn hba_scope(
    kind: Option<&str>,
    address: Option<&str>,
    prefix: Option<u8>,
) -> Option<&'static str> {
    match kind? {
        "local" => Some("local"),
        _ => {
            let Some(addr) = address else {
                return Some("network");
            };
            let a = addr.trim();
            if a.eq_ignore_ascii_case("localhost") || a == "samehost" {
                return Some("loopback");
            }
            let ip_text = a.split_once('/').map_or(a, |(ip, _)| ip);
            let ip_text = ip_text.split_once('%').map_or(ip_text, |(ip, _)| ip);
            match (ip_text.parse::<IpAddr>(), prefix) {
                (Ok(ip), Some(p)) if loopback_range(ip, p) => Some("loopback"),
                _ => Some("network"),
            }
        }
    }
}

/// The line as a DBA reads it in the file: `pg_hba.conf:12 host all all 0.0.0.0/0 trust`.
fn hba_display(row: &Map<String, Value>) -> String {
    let s = |k: &str| row.get(k).and_then(Value::as_str);
    let list = |k: &str| {
        row.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let file = s("file_name").unwrap_or("pg_hba.conf");
    let base = file.rsplit('/').next().unwrap_or(file);
    let line = row
        .get("line_number")
        .and_then(Value::as_i64)
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    let mut out = format!("{base}:{line}");
    let Some(kind) = s("type") else {
        if let Some(e) = s("error") {
            out.push_str(&format!(" (error: {e})"));
        }
        return out;
    };
    out.push_str(&format!(
        " {kind} {} {}",
        list("database"),
        list("user_name")
    ));
    if let Some(addr) = s("address") {
        out.push(' ');
        out.push_str(addr);
        if let Some(p) = row.get("prefix_len").and_then(Value::as_i64)
            && !addr.contains('/')
        {
            out.push_str(&format!("/{p}"));
        }
    }
    if let Some(m) = s("auth_method") {
        out.push(' ');
        out.push_str(m);
    }
    if let Some(e) = s("error") {
        out.push_str(&format!(" (error: {e})"));
    }
    out
}

/// Add `scope`, `replication` and `display` to every row of the `hba` list (see
/// docs/facts.md).
pub(crate) fn annotate_hba(mut hba: Value) -> Value {
    if let Value::Array(rows) = &mut hba {
        for row in rows {
            let Value::Object(obj) = row else { continue };
            let prefix = obj
                .get("prefix_len")
                .and_then(Value::as_u64)
                .and_then(|p| u8::try_from(p).ok());
            let scope = hba_scope(
                obj.get("type").and_then(Value::as_str),
                obj.get("address").and_then(Value::as_str),
                prefix,
            );
            let replication = obj
                .get("database")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "replication"));
            let display = hba_display(obj);
            obj.insert("scope".into(), json!(scope));
            obj.insert("replication".into(), json!(replication));
            obj.insert("display".into(), json!(display));
        }
    }
    hba
}

// ---------------------------------------------------------------- memberships

/// Every role's transitive reach through `pg_auth_members`, in two lists: `set` = the roles
/// it can SET ROLE to (what gives SUPERUSER, BYPASSRLS, CREATEROLE … attributes, which are
/// never inherited), `usage` = the roles whose privileges it has without SET ROLE. From 16
/// each grant carries `set_option` and `inherit_option`; before 16 every membership allows
/// SET ROLE, and privileges are inherited unless the member is NOINHERIT. Chains do not
/// mix: inheriting from B does not let one SET ROLE to what B may SET ROLE to.
/// `UNION` (not `UNION ALL`) ends the recursion.
pub(crate) fn memberships_sql(version_num: i32) -> String {
    let (set_edge, usage_edge) = if version_num >= 160000 {
        ("a.set_option", "a.inherit_option")
    } else {
        ("true", "m.rolinherit")
    };
    format!(
        "WITH RECURSIVE \
         e AS (SELECT a.member, a.roleid, {set_edge} AS s, {usage_edge} AS u \
               FROM pg_catalog.pg_auth_members a \
               JOIN pg_catalog.pg_roles m ON m.oid = a.member), \
         rs(member, roleid) AS ( \
           SELECT member, roleid FROM e WHERE s \
           UNION SELECT rs.member, e.roleid FROM rs JOIN e ON e.member = rs.roleid AND e.s), \
         ru(member, roleid) AS ( \
           SELECT member, roleid FROM e WHERE u \
           UNION SELECT ru.member, e.roleid FROM ru JOIN e ON e.member = ru.roleid AND e.u), \
         x AS (SELECT member, roleid, 's' AS k FROM rs UNION ALL SELECT member, roleid, 'u' FROM ru) \
         SELECT m.rolname::text AS name, \
                coalesce(array_agg(DISTINCT g.rolname::text) FILTER (WHERE x.k = 's'), '{{}}') AS set, \
                coalesce(array_agg(DISTINCT g.rolname::text) FILTER (WHERE x.k = 'u'), '{{}}') AS usage \
         FROM x JOIN pg_catalog.pg_roles m ON m.oid = x.member \
                JOIN pg_catalog.pg_roles g ON g.oid = x.roleid \
         WHERE x.member <> x.roleid GROUP BY m.rolname ORDER BY 1"
    )
}

fn memberships(rows: &[Row]) -> Result<Value, String> {
    let mut out = Map::new();
    for row in rows {
        let name: String = col(row, "name")?;
        let set: Vec<String> = col::<Option<Vec<String>>>(row, "set")?.unwrap_or_default();
        let usage: Vec<String> = col::<Option<Vec<String>>>(row, "usage")?.unwrap_or_default();
        out.insert(name, json!({"set": set, "usage": usage}));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------- password checks

/// The most common passwords (from public breach-derived top lists, plus the defaults
/// people type for a database: postgres, changeme …). The role's own name is always
/// tried first. Reports never say which one matched.
pub(crate) const COMMON_PASSWORDS: &[&str] = &[
    "postgres",
    "postgresql",
    "password",
    "Password",
    "password1",
    "Password1",
    "P@ssw0rd",
    "passw0rd",
    "pass",
    "pass123",
    "admin",
    "admin123",
    "administrator",
    "root",
    "root123",
    "123456",
    "1234567",
    "12345678",
    "123456789",
    "1234567890",
    "12345",
    "1234",
    "123",
    "111111",
    "000000",
    "123123",
    "654321",
    "qwerty",
    "qwerty123",
    "azerty",
    "abc123",
    "changeme",
    "changeit",
    "secret",
    "letmein",
    "welcome",
    "Welcome1",
    "test",
    "test123",
    "testing",
    "guest",
    "default",
    "demo",
    "temp",
    "master",
    "login",
    "iloveyou",
    "monkey",
    "dragon",
    "sunshine",
    "trustno1",
    "database",
    "db",
    "pgsql",
    "postgres123",
];

/// Upper bound of PBKDF2 iterations spent per audit (all roles, all candidates): with
/// the default 4096 iterations that is 60 login roles checked against every candidate
/// (measured: 229,000 iterations — one role, 56 candidates — take 40 ms of one core in a
/// release build, 0.8 s in a debug build; roles are spread over the cores). Beyond it, the
/// remaining roles are checked against their own name only and the section says so.
pub(crate) const WORK_LIMIT: u64 = 60 * 4096 * 56;

/// Verdicts.
pub(crate) const EQUALS_NAME: &str = "equals role name";
pub(crate) const COMMON: &str = "common password";

/// A stored verifier, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verifier {
    Scram {
        iterations: u32,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
    },
    /// The 32 hex digits after `md5`.
    Md5(String),
    /// Not a hash: PostgreSQL's `get_password_type()` calls anything else plain text.
    Plain(String),
}

/// Parse `rolpassword` like PostgreSQL's `get_password_type()`/`parse_scram_secret()`.
/// `Err` for a SCRAM verifier that does not parse (it cannot be checked).
pub(crate) fn parse_verifier(secret: &str) -> Result<Verifier, String> {
    if let Some(hex) = secret.strip_prefix("md5")
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(Verifier::Md5(hex.to_ascii_lowercase()));
    }
    let Some(rest) = secret.strip_prefix("SCRAM-SHA-256$") else {
        return Ok(Verifier::Plain(secret.to_string()));
    };
    let bad = || "SCRAM-SHA-256 verifier in an unknown format".to_string();
    let (iter_salt, keys) = rest.split_once('$').ok_or_else(bad)?;
    let (iter, salt) = iter_salt.split_once(':').ok_or_else(bad)?;
    let (stored, _server) = keys.split_once(':').ok_or_else(bad)?;
    let iterations: u32 = iter.parse().map_err(|_| bad())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(salt).map_err(|_| bad())?;
    let stored_key = b64.decode(stored).map_err(|_| bad())?;
    if iterations == 0 || stored_key.len() != 32 {
        return Err(bad());
    }
    Ok(Verifier::Scram {
        iterations,
        salt,
        stored_key,
    })
}

/// SASLprep as PostgreSQL applies it before hashing: the normalised string, or the raw
/// bytes when normalisation fails.
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Write the big-endian bytes of a SHA-256 state into `out[..32]`.
fn put_state(state: &[u32; 8], out: &mut [u8; 64]) {
    for i in 0..8 {
        let b = state[i].to_be_bytes();
        out[4 * i] = b[0];
        out[4 * i + 1] = b[1];
        out[4 * i + 2] = b[2];
        out[4 * i + 3] = b[3];
    }
}

/// PBKDF2-HMAC-SHA-256 with a 32-byte output, as PostgreSQL's `scram_SaltedPassword()`.
///
/// The first HMAC (over the salt, any length) uses the `hmac` crate; the other
/// `iterations - 1` rounds hash 32-byte blocks from the precomputed inner and outer key
/// states with `sha2`'s block function, so that the hot loop runs at the (optimised)
/// speed of `sha2` even in a debug build of pgready — the generic `pbkdf2` path is ~20x
/// slower there. The unit tests check it against the `pbkdf2` crate.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut key = [0u8; 64];
    if password.len() > 64 {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let pad = |b: u8| {
        let mut blk = [0u8; 64];
        for (o, k) in blk.iter_mut().zip(key.iter()) {
            *o = k ^ b;
        }
        let mut st = SHA256_IV;
        sha2::block_api::compress256(&mut st, &[blk]);
        st
    };
    let (inner, outer) = (pad(0x36), pad(0x5c));
    // U1 = HMAC(password, salt ‖ INT(1))
    let u: [u8; 32] = match <Hmac<Sha256> as KeyInit>::new_from_slice(password) {
        Ok(mut mac) => {
            mac.update(salt);
            mac.update(&1u32.to_be_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(&mac.finalize().into_bytes());
            out
        }
        // HMAC accepts keys of any length; this branch cannot be taken.
        Err(_) => return [0u8; 32],
    };
    // Each round hashes one 64-byte key block (already in `inner`/`outer`) and a
    // 32-byte message: one final block holding the message, 0x80 and the length in bits
    // (64 + 32 bytes = 768). The padding never changes; only the first 32 bytes do.
    let mut iblock = [0u8; 64];
    iblock[32] = 0x80;
    iblock[56..].copy_from_slice(&768u64.to_be_bytes());
    let mut oblock = iblock;
    iblock[..32].copy_from_slice(&u);
    let mut result = u;
    for _ in 1..iterations {
        let mut st = inner;
        sha2::block_api::compress256(&mut st, std::slice::from_ref(&iblock));
        put_state(&st, &mut oblock);
        let mut st = outer;
        sha2::block_api::compress256(&mut st, std::slice::from_ref(&oblock));
        put_state(&st, &mut iblock);
        for i in 0..32 {
            result[i] ^= iblock[i];
        }
    }
    result
}

/// StoredKey for `password` with this salt and iteration count.
pub(crate) fn scram_stored_key(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let salted = pbkdf2_sha256(&normalize(password), salt, iterations);
    let client_key = match <Hmac<Sha256> as KeyInit>::new_from_slice(&salted) {
        Ok(mut mac) => {
            mac.update(b"Client Key");
            mac.finalize().into_bytes()
        }
        // HMAC accepts keys of any length; this branch cannot be taken.
        Err(_) => return [0u8; 32],
    };
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(client_key));
    out
}

fn md5_hex(password: &str, role: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(role.as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

fn matches(v: &Verifier, role: &str, candidate: &str) -> bool {
    match v {
        Verifier::Scram {
            iterations,
            salt,
            stored_key,
        } => scram_stored_key(candidate, salt, *iterations).as_slice() == stored_key.as_slice(),
        Verifier::Md5(hex) => md5_hex(candidate, role) == *hex,
        Verifier::Plain(p) => p == candidate,
    }
}

/// What the check found for one role.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Checked against every candidate: the verdict, or `None` when nothing matched.
    Checked(Option<&'static str>),
    /// Not (fully) checked, with the reason; a verdict found before stopping is kept.
    Partial(Option<&'static str>, String),
}

/// Cost in PBKDF2 iterations of trying one candidate.
fn cost(v: &Verifier) -> u64 {
    match v {
        Verifier::Scram { iterations, .. } => u64::from(*iterations),
        _ => 0,
    }
}

/// Check each (role, verifier) against its own name, then [`COMMON_PASSWORDS`], within
/// `limit` PBKDF2 iterations in total. Roles are shared between up to `threads` threads.
pub(crate) fn check_all(
    roles: &[(String, Result<Verifier, String>)],
    limit: u64,
    threads: usize,
) -> Vec<Outcome> {
    // The name pass is always done (one candidate per role); the budget decides which
    // roles also get the list, in name order.
    let mut budget = limit;
    let full: Vec<bool> = roles
        .iter()
        .map(|(_, v)| match v {
            Ok(v) => {
                let c = cost(v).saturating_mul(COMMON_PASSWORDS.len() as u64 + 1);
                if c <= budget {
                    budget -= c;
                    true
                } else {
                    false
                }
            }
            Err(_) => false,
        })
        .collect();
    let one = |i: usize| -> Outcome {
        let (role, v) = &roles[i];
        let v = match v {
            Ok(v) => v,
            Err(e) => return Outcome::Partial(None, e.clone()),
        };
        if matches(v, role, role) {
            return Outcome::Checked(Some(EQUALS_NAME));
        }
        if !full[i] {
            return Outcome::Partial(
                None,
                format!(
                    "only the role name was tried: the list of common passwords would exceed \
                     the work limit ({limit} PBKDF2 iterations per audit)"
                ),
            );
        }
        if COMMON_PASSWORDS
            .iter()
            .any(|c| *c != role && matches(v, role, c))
        {
            return Outcome::Checked(Some(COMMON));
        }
        Outcome::Checked(None)
    };
    let threads = threads.clamp(1, 8).min(roles.len().max(1));
    let mut out: Vec<Option<Outcome>> = vec![None; roles.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..roles.len())
                        .step_by(threads)
                        .map(|i| (i, one(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            if let Ok(done) = h.join() {
                for (i, o) in done {
                    out[i] = Some(o);
                }
            }
        }
    });
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Partial(None, "the check failed".to_string())))
        .collect()
}

/// Whether the session is private enough to carry verifiers: TLS, or a client address
/// that is null (Unix socket) or loopback.
const CHANNEL_SQL: &str = "\
SELECT coalesce((SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()), \
                false) AS ssl, \
       pg_catalog.inet_client_addr() IS NULL \
       OR pg_catalog.inet_client_addr() <<= '127.0.0.0/8'::inet \
       OR pg_catalog.inet_client_addr() = '::1'::inet \
       OR pg_catalog.inet_client_addr() <<= '::ffff:127.0.0.0/104'::inet AS local";

/// Login roles with a stored password. Only ever run by [`password_checks`].
const VERIFIERS_SQL: &str = "\
SELECT rolname::text AS name, rolpassword::text AS secret \
FROM pg_catalog.pg_authid WHERE rolcanlogin AND rolpassword IS NOT NULL ORDER BY rolname";

async fn password_checks(client: &Client, probe: &Probe) -> Section {
    if !probe.is_superuser && !probe.can_read_authid {
        return Section::missing(
            "needs superuser: stored password verifiers (pg_authid.rolpassword) are readable \
             only by superusers (no predefined role grants it on 14–18)",
        );
    }
    let channel = match client.query_typed(CHANNEL_SQL, &[]).await {
        Ok(rows) => rows.first().map(|r| {
            (
                col::<Option<bool>>(r, "ssl")
                    .ok()
                    .flatten()
                    .unwrap_or(false),
                col::<Option<bool>>(r, "local")
                    .ok()
                    .flatten()
                    .unwrap_or(false),
            )
        }),
        Err(e) => return Section::missing(format!("query failed: {}", pg_error(&e))),
    };
    if !matches!(channel, Some((true, _)) | Some((_, true))) {
        return Section::missing(
            "not checked: the audit session is neither TLS-encrypted nor local, and pgready \
             does not pull password verifiers over clear-text TCP (connect with \
             sslmode=require or better, or over the Unix socket)",
        );
    }
    let rows = match client.query_typed(VERIFIERS_SQL, &[]).await {
        Ok(rows) => rows,
        Err(e) => return Section::missing(format!("query failed: {}", pg_error(&e))),
    };
    let mut roles = Vec::with_capacity(rows.len());
    for row in &rows {
        let (Ok(name), Ok(Some(secret))) = (
            col::<String>(row, "name"),
            col::<Option<String>>(row, "secret"),
        ) else {
            continue;
        };
        roles.push((name, parse_verifier(&secret)));
    }
    drop(rows);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let outcomes = check_all(&roles, WORK_LIMIT, threads);
    let mut verdicts = Map::new();
    let mut not_checked = Map::new();
    for ((name, _), outcome) in roles.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Checked(v) => {
                verdicts.insert(name, json!(v));
            }
            Outcome::Partial(v, reason) => {
                if v.is_some() {
                    verdicts.insert(name.clone(), json!(v));
                }
                not_checked.insert(name, json!(reason));
            }
        }
    }
    let incomplete = !not_checked.is_empty();
    let reason = format!(
        "{} login role(s) not checked against every candidate: {}",
        not_checked.len(),
        not_checked.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let data = json!({
        "candidates": COMMON_PASSWORDS.len() + 1,
        "roles": verdicts,
        "not_checked": not_checked,
    });
    if incomplete {
        Section::partial(data, reason)
    } else {
        Section::ok(data)
    }
}

// ---------------------------------------------------------------- per database

/// Objects outside the system schemas (`pg_*` names are reserved for the system, so
/// `pg_catalog`, `pg_toast`, `pg_temp_N` … are all excluded).
const USER_SCHEMA: &str = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";

/// The per-database security facts as one JSON object, from one query (see docs/facts.md,
/// `databases[].security`). Extension members are excluded from functions; `public` may
/// have been dropped (then `public_schema` is null).
pub(crate) fn db_sql() -> String {
    let not_ext = |classid: &str, objid: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
                         WHERE d.classid = '{classid}'::regclass AND d.objid = {objid} \
                           AND d.deptype = 'e')"
        )
    };
    format!(
        "SELECT json_build_object( \
  'public_schema', (SELECT json_build_object( \
       'owner', pg_catalog.pg_get_userbyid(n.nspowner), \
       'public_create', EXISTS (SELECT 1 FROM pg_catalog.aclexplode( \
            coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a \
            WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')) \
     FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public'), \
  'secdef_functions', coalesce((SELECT json_agg(json_build_object( \
       'name', format('%I.%I(%s)', n.nspname, p.proname, \
                      pg_catalog.pg_get_function_identity_arguments(p.oid)), \
       'owner', pg_catalog.pg_get_userbyid(p.proowner), \
       'search_path', (SELECT substr(c, 13) FROM unnest(p.proconfig) c \
                       WHERE c LIKE 'search\\_path=%' LIMIT 1), \
       'public_execute', EXISTS (SELECT 1 FROM pg_catalog.aclexplode( \
            coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a \
            WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'), \
       'grantees', ARRAY(SELECT DISTINCT pg_catalog.pg_get_userbyid(a.grantee)::text \
            FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a \
            WHERE a.grantee NOT IN (0, p.proowner) AND a.privilege_type = 'EXECUTE' ORDER BY 1)) \
       ORDER BY n.nspname, p.proname, p.oid) \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE p.prosecdef AND {USER_SCHEMA} AND {not_ext_proc}), '[]'::json), \
  'untrusted_languages', coalesce((SELECT json_agg(json_build_object( \
       'name', l.lanname, \
       'owner', pg_catalog.pg_get_userbyid(l.lanowner), \
       'functions', (SELECT count(*) FROM pg_catalog.pg_proc p WHERE p.prolang = l.oid \
                     AND {not_ext_proc}), \
       'extension', (SELECT e.extname FROM pg_catalog.pg_depend d \
                     JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
                     WHERE d.classid = 'pg_catalog.pg_language'::regclass AND d.objid = l.oid \
                       AND d.refclassid = 'pg_catalog.pg_extension'::regclass \
                       AND d.deptype = 'e' LIMIT 1)) ORDER BY l.lanname) \
     FROM pg_catalog.pg_language l WHERE l.lanispl AND NOT l.lanpltrusted), '[]'::json), \
  'rls_tables', coalesce((SELECT json_agg(json_build_object( \
       'name', format('%I.%I', n.nspname, c.relname), \
       'owner', pg_catalog.pg_get_userbyid(c.relowner), \
       'rls_enabled', c.relrowsecurity, \
       'rls_forced', c.relforcerowsecurity, \
       'policies', (SELECT count(*) FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid), \
       'permissive_true', ARRAY(SELECT po.polname::text FROM pg_catalog.pg_policy po \
            WHERE po.polrelid = c.oid AND po.polpermissive AND po.polroles = '{{0}}'::oid[] \
              AND coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), \
                           pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid)) = 'true' \
            ORDER BY 1)) \
       ORDER BY n.nspname, c.relname) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA} \
       AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy po \
                                        WHERE po.polrelid = c.oid))), '[]'::json), \
  'default_acl_public', coalesce((SELECT json_agg(x ORDER BY x::text) FROM ( \
       SELECT json_build_object( \
         'role', pg_catalog.pg_get_userbyid(d.defaclrole), \
         'schema', n.nspname, \
         'objtype', d.defaclobjtype, \
         'privileges', array_agg(a.privilege_type ORDER BY a.privilege_type)) AS x \
       FROM pg_catalog.pg_default_acl d \
       LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace \
       CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) a \
       WHERE a.grantee = 0 \
         AND NOT (d.defaclobjtype = 'f' AND a.privilege_type = 'EXECUTE') \
         AND NOT (d.defaclobjtype = 'T' AND a.privilege_type = 'USAGE') \
       GROUP BY d.defaclrole, n.nspname, d.defaclobjtype) s), '[]'::json), \
  'owners', ARRAY(SELECT DISTINCT pg_catalog.pg_get_userbyid(o.owner)::text FROM ( \
       SELECT c.relowner AS owner FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} \
       UNION SELECT p.proowner FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE {USER_SCHEMA} AND {not_ext_proc} \
       UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n \
         WHERE {USER_SCHEMA} AND n.nspname <> 'public') o ORDER BY 1) \
)::text AS facts",
        not_ext_proc = not_ext("pg_catalog.pg_proc", "p.oid"),
    )
}

/// Parse the one row of [`db_sql`].
pub(crate) fn db_facts(rows: &[Row]) -> Result<Value, String> {
    let row = rows.first().ok_or("no row")?;
    let text: Option<String> = col(row, "facts")?;
    let text = text.ok_or("the query returned null")?;
    serde_json::from_str(&text).map_err(|e| format!("unexpected JSON from the server: {e}"))
}

/// Read the per-database security facts of the database `client` is connected to.
pub(crate) async fn read_db(client: &Client) -> Result<Value, String> {
    let rows = client
        .query_typed(&db_sql(), &[])
        .await
        .map_err(|e| format!("query failed: {}", pg_error(&e)))?;
    db_facts(&rows)
}

// ---------------------------------------------------------------- entry point

/// Collect `memberships` and `password_checks`, and the security facts of the database
/// of `client` (returned, for `databases`).
pub(crate) async fn collect(
    client: &Client,
    probe: &Probe,
    facts: &mut Facts,
) -> Result<Value, String> {
    let msql = memberships_sql(probe.version_num);
    let (m, current) = tokio::join!(client.query_typed(&msql, &[]), read_db(client));
    facts.insert(
        "memberships",
        match m {
            Ok(rows) => match memberships(&rows) {
                Ok(v) => Section::ok(v),
                Err(e) => Section::missing(format!("query failed: {e}")),
            },
            Err(e) => Section::missing(format!("query failed: {}", pg_error(&e))),
        },
    );
    facts.insert("password_checks", password_checks(client, probe).await);
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let sc = |t, a, p| hba_scope(Some(t), a, p);
        assert_eq!(sc("local", None, None), Some("local"));
        assert_eq!(sc("host", Some("127.0.0.1"), Some(32)), Some("loopback"));
        assert_eq!(sc("hostssl", Some("127.0.0.0"), Some(8)), Some("loopback"));
        assert_eq!(sc("host", Some("127.0.0.1"), Some(0)), Some("network"));
        assert_eq!(sc("host", Some("::1"), Some(128)), Some("loopback"));
        assert_eq!(sc("host", Some("::1"), Some(64)), Some("network"));
        assert_eq!(
            sc("host", Some("::ffff:127.0.0.1"), Some(128)),
            Some("loopback")
        );
        assert_eq!(sc("host", Some("0.0.0.0"), Some(0)), Some("network"));
        assert_eq!(sc("host", Some("10.0.0.0"), Some(8)), Some("network"));
        assert_eq!(sc("host", Some("all"), None), Some("network"));
        assert_eq!(sc("host", Some("samenet"), None), Some("network"));
        assert_eq!(sc("host", Some("samehost"), None), Some("loopback"));
        assert_eq!(sc("host", Some("localhost"), None), Some("loopback"));
        assert_eq!(sc("host", Some("db.example.com"), None), Some("network"));
        assert_eq!(hba_scope(None, None, None), None);
    }

    #[test]
    fn display_reads_like_the_file() {
        let v = annotate_hba(json!([
            {"file_name": "/var/lib/pg/pg_hba.conf", "line_number": 12, "type": "host",
             "database": ["all"], "user_name": ["all"], "address": "0.0.0.0", "netmask": "0.0.0.0",
             "prefix_len": 0, "auth_method": "trust", "error": null},
            {"file_name": "pg_hba.conf", "line_number": 3, "type": "local",
             "database": ["all"], "user_name": ["postgres"], "address": null, "prefix_len": null,
             "auth_method": "peer", "error": null},
            {"file_name": "pg_hba.conf", "line_number": 9, "type": null, "database": [],
             "user_name": [], "address": null, "prefix_len": null, "auth_method": null,
             "error": "invalid authentication method \"bogus\""},
            {"file_name": "pg_hba.conf", "line_number": 4, "type": "hostssl",
             "database": ["replication"], "user_name": ["rep"], "address": "samenet",
             "prefix_len": null, "auth_method": "scram-sha-256", "error": null}
        ]));
        assert_eq!(
            v[0]["display"],
            "pg_hba.conf:12 host all all 0.0.0.0/0 trust"
        );
        assert_eq!(v[0]["scope"], "network");
        assert_eq!(v[1]["display"], "pg_hba.conf:3 local all postgres peer");
        assert_eq!(v[1]["scope"], "local");
        assert_eq!(
            v[2]["display"],
            "pg_hba.conf:9 (error: invalid authentication method \"bogus\")"
        );
        assert_eq!(v[2]["scope"], Value::Null);
        assert_eq!(v[3]["replication"], true);
        assert_eq!(
            v[3]["display"],
            "pg_hba.conf:4 hostssl replication rep samenet scram-sha-256"
        );
    }

    /// A verifier computed by PostgreSQL 18.4 (`SET scram_iterations = 4096; CREATE ROLE
    /// vec PASSWORD 'pencil'`), read from pg_authid.
    const PG_VERIFIER: &str = "SCRAM-SHA-256$4096:GpKfst1xHSKz7BdwbYgEzg==$e8rEn6UpE1b4t0qImcLTwslzt2np0bRaYbtBCjVHj38=:00ZOGlEM/fkcDNU2y7L0R+pzyKEDxnu6YtIVFMi8gl0=";

    #[test]
    fn scram_verifier_from_postgres() {
        let v = parse_verifier(PG_VERIFIER).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&v, "vec", "pencil"));
        assert!(!matches(&v, "vec", "vec"));
        assert!(!matches(&v, "vec", "pencil "));
    }

    #[test]
    fn pbkdf2_matches_the_pbkdf2_crate() {
        for (pw, salt, it) in [
            (&b"pencil"[..], &b"0123456789abcdef"[..], 1u32),
            (b"pencil", b"0123456789abcdef", 2),
            (b"pencil", b"0123456789abcdef", 4096),
            (b"", b"s", 3),
            (&[b'x'; 64][..], b"salt", 5),
            (&[b'y'; 100][..], &[7u8; 40][..], 7),
        ] {
            let mut expected = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(pw, salt, it, &mut expected);
            assert_eq!(pbkdf2_sha256(pw, salt, it), expected, "{it} iterations");
        }
    }

    #[test]
    fn md5_and_plain() {
        // md5('t_a' || 't_a'), as PostgreSQL stores it for role t_a with password t_a.
        let hex = md5_hex("t_a", "t_a");
        let v = parse_verifier(&format!("md5{hex}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches(&v, "t_a", "t_a"));
        assert!(!matches(&v, "t_a", "postgres"));
        assert_eq!(
            parse_verifier("hunter2"),
            Ok(Verifier::Plain("hunter2".into()))
        );
        assert!(parse_verifier("SCRAM-SHA-256$x:y$z").is_err());
        assert!(parse_verifier("SCRAM-SHA-256$4096:AAAA$AAAA:AAAA").is_err());
    }

    #[test]
    fn verdicts_and_work_limit() {
        let salt = b"0123456789abcdef".to_vec();
        let scram = |pw: &str, it: u32| Verifier::Scram {
            iterations: it,
            salt: salt.clone(),
            stored_key: scram_stored_key(pw, &salt, it).to_vec(),
        };
        let roles = vec![
            ("alice".to_string(), Ok(scram("alice", 16))),
            ("bob".to_string(), Ok(scram("changeme", 16))),
            ("carol".to_string(), Ok(scram("k7#Lq9!vZ2", 16))),
            ("dave".to_string(), Err("bad".to_string())),
            (
                "erin".to_string(),
                Ok(Verifier::Md5(md5_hex("erin", "erin"))),
            ),
        ];
        let out = check_all(&roles, u64::MAX, 2);
        assert_eq!(out[0], Outcome::Checked(Some(EQUALS_NAME)));
        assert_eq!(out[1], Outcome::Checked(Some(COMMON)));
        assert_eq!(out[2], Outcome::Checked(None));
        assert!(matches!(out[3], Outcome::Partial(None, _)));
        assert_eq!(out[4], Outcome::Checked(Some(EQUALS_NAME)));
        // A budget too small for the list: the name is still tried, the rest reported.
        let out = check_all(&roles, 10, 1);
        assert_eq!(out[0], Outcome::Checked(Some(EQUALS_NAME)));
        assert!(matches!(&out[1], Outcome::Partial(None, r) if r.contains("work limit")));
        assert_eq!(out[4], Outcome::Checked(Some(EQUALS_NAME)));
    }
}
