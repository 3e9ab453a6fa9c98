//! Parsing libpq connection strings: `postgresql://` URIs and `key=value` lists.
//!
//! This follows `conninfo_parse` and `conninfo_uri_parse_options` in libpq's
//! `fe-connect.c`: the same quoting and escaping rules, the same handling of empty URI
//! components, and error messages worded like libpq's. One deliberate difference: no
//! error message repeats the text of a password.

/// The connection options libpq knows (PostgreSQL 18), each with its environment
/// variable. A keyword outside this list is an error, as in libpq.
pub(crate) const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("service", Some("PGSERVICE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("dbname", Some("PGDATABASE")),
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslpassword", None),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslkeylogfile", None),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("min_protocol_version", Some("PGMINPROTOCOLVERSION")),
    ("max_protocol_version", Some("PGMAXPROTOCOLVERSION")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
    ("replication", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("scram_client_key", None),
    ("scram_server_key", None),
    ("oauth_issuer", None),
    ("oauth_client_id", None),
    ("oauth_client_secret", None),
    ("oauth_scope", None),
];

/// Whether libpq knows this connection option.
pub(crate) fn is_keyword(key: &str) -> bool {
    KEYWORDS.iter().any(|(k, _)| *k == key)
}

/// libpq's test for "this is a connection string, not a database name": a URI prefix or
/// an `=` anywhere (`recognized_connection_string`).
pub(crate) fn is_connection_string(s: &str) -> bool {
    uri_prefix_len(s).is_some() || s.contains('=')
}

/// Parse a connection string into `(keyword, value)` pairs in the order given; a later
/// pair overrides an earlier one with the same keyword.
pub(crate) fn parse(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    match uri_prefix_len(s) {
        Some(n) => parse_uri(s, n, &mut out)?,
        None => parse_keyword_value(s, &mut out)?,
    }
    Ok(out)
}

fn uri_prefix_len(s: &str) -> Option<usize> {
    ["postgresql://", "postgres://"]
        .iter()
        .find(|p| s.starts_with(*p))
        .map(|p| p.len())
}

/// Store one option as libpq's `conninfo_storeval` does: `requiressl` becomes `sslmode`,
/// an unknown keyword is an error.
fn store(
    out: &mut Vec<(String, String)>,
    key: &str,
    value: String,
    unknown: impl FnOnce(&str) -> String,
) -> Result<(), String> {
    if key == "requiressl" {
        let mode = if value.starts_with('1') {
            "require"
        } else {
            "prefer"
        };
        out.push(("sslmode".to_string(), mode.to_string()));
        return Ok(());
    }
    if !is_keyword(key) {
        return Err(unknown(key));
    }
    out.push((key.to_string(), value));
    Ok(())
}

/// libpq's `isspace` in the C locale.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn parse_keyword_value(s: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut chars = s.chars().peekable();
    let mut previous_key: Option<String> = None;
    loop {
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.peek().is_none() {
            return Ok(());
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !is_space(*c)) {
            key.push(c);
        }
        while chars.next_if(|c| is_space(*c)).is_some() {}
        if chars.next() != Some('=') {
            // A stray word is usually the rest of an unquoted value with a space in it:
            // never echo it when that value was a password.
            return Err(if previous_key.as_deref() == Some("password") {
                "missing \"=\" after the password value in connection info string \
                 (quote values that contain spaces: password='…')"
                    .to_string()
            } else {
                format!("missing \"=\" after \"{key}\" in connection info string")
            });
        }
        while chars.next_if(|c| is_space(*c)).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(
                            "unterminated quoted string in connection info string".to_string()
                        );
                    }
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(
                                "unterminated quoted string in connection info string".to_string()
                            );
                        }
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next() {
                if is_space(c) {
                    break;
                }
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        store(out, &key, value, |k| {
            format!("invalid connection option \"{k}\"")
        })?;
        previous_key = Some(key);
    }
}

/// Percent-decode one URI component. `what` names the component in error messages; the
/// text of a password is never repeated.
fn decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            let shown = if what == "password" {
                String::new()
            } else {
                format!(": \"{s}\"")
            };
            match hex {
                Some(0) => {
                    return Err(format!(
                        "forbidden value %00 in percent-encoded {what} in URI{shown}"
                    ));
                }
                Some(b) => out.push(b),
                None => {
                    return Err(format!(
                        "invalid percent-encoded token in URI {what}{shown}"
                    ));
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the URI {what} is not valid UTF-8 once decoded"))
}

fn parse_uri(uri: &str, prefix_len: usize, out: &mut Vec<(String, String)>) -> Result<(), String> {
    let mut rest = &uri[prefix_len..];

    // user[:password]@ — only if an '@' comes before the first '/'.
    if let Some(pos) = rest.find(['@', '/'])
        && rest.as_bytes()[pos] == b'@'
    {
        let userinfo = &rest[..pos];
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            out.push(("user".to_string(), decode(user, "user name")?));
        }
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            out.push(("password".to_string(), decode(p, "password")?));
        }
        rest = &rest[pos + 1..];
    }

    // netloc[:port][,netloc[:port]...]
    let mut hosts = String::new();
    let mut ports = String::new();
    let terminator = loop {
        let host;
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Err(format!(
                    "end of string reached when looking for matching \"]\" in IPv6 host address in URI: \"{}\"",
                    redact_userinfo(uri, prefix_len)
                ));
            };
            if end == 0 {
                return Err(format!(
                    "IPv6 host address may not be empty in URI: \"{}\"",
                    redact_userinfo(uri, prefix_len)
                ));
            }
            host = &after[..end];
            rest = &after[end + 1..];
            if let Some(c) = rest.chars().next()
                && !matches!(c, ':' | '/' | '?' | ',')
            {
                return Err(format!(
                    "unexpected character \"{c}\" after IPv6 host address in URI (expected \":\" or \"/\"): \"{}\"",
                    redact_userinfo(uri, prefix_len)
                ));
            }
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            host = &rest[..end];
            rest = &rest[end..];
        }
        hosts.push_str(host);
        if let Some(after) = rest.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            ports.push_str(&after[..end]);
            rest = &after[end..];
        }
        match rest.chars().next() {
            Some(',') => {
                hosts.push(',');
                ports.push(',');
                rest = &rest[1..];
            }
            other => break other,
        }
    };
    if !hosts.is_empty() {
        out.push(("host".to_string(), decode(&hosts, "host")?));
    }
    if !ports.is_empty() {
        out.push(("port".to_string(), decode(&ports, "port")?));
    }

    // /dbname — an empty one is left unset, so PGDATABASE still applies (as in libpq).
    let mut terminator = terminator;
    if terminator == Some('/') {
        let after = &rest[1..];
        let end = after.find('?').unwrap_or(after.len());
        if end > 0 {
            out.push((
                "dbname".to_string(),
                decode(&after[..end], "database name")?,
            ));
        }
        rest = &after[end..];
        terminator = rest.chars().next();
    }

    if terminator == Some('?') {
        parse_uri_params(&rest[1..], out)?;
    }
    Ok(())
}

fn parse_uri_params(params: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    if params.is_empty() {
        return Ok(());
    }
    let params = params.strip_suffix('&').unwrap_or(params);
    for pair in params.split('&') {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "missing key/value separator \"=\" in URI query parameter: \"{pair}\""
            ));
        };
        if value.contains('=') {
            return Err(format!(
                "extra key/value separator \"=\" in URI query parameter: \"{key}\""
            ));
        }
        let key = decode(key, "query parameter name")?;
        let what = if key == "password" {
            "password"
        } else {
            "query parameter value"
        };
        let value = decode(value, what)?;
        let (key, value) = if key == "ssl" && value == "true" {
            ("sslmode".to_string(), "require".to_string())
        } else {
            (key, value)
        };
        store(out, &key, value, |k| {
            format!("invalid URI query parameter: \"{k}\"")
        })?;
    }
    Ok(())
}

/// The URI with any `user:password@` part replaced, for error messages.
fn redact_userinfo(uri: &str, prefix_len: usize) -> String {
    let rest = &uri[prefix_len..];
    match rest.find(['@', '/']) {
        Some(pos) if rest.as_bytes()[pos] == b'@' => {
            format!("{}…@{}", &uri[..prefix_len], &rest[pos + 1..])
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> Vec<(String, String)> {
        match parse(s) {
            Ok(v) => v,
            Err(e) => panic!("parse({s:?}) failed: {e}"),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keyword_value_basic_and_spaces_around_equals() {
        assert_eq!(
            kv("host=db1 port = 5433\tdbname= app  user =audit"),
            pairs(&[
                ("host", "db1"),
                ("port", "5433"),
                ("dbname", "app"),
                ("user", "audit")
            ])
        );
        assert_eq!(kv(""), pairs(&[]));
        assert_eq!(kv("   "), pairs(&[]));
    }

    #[test]
    fn keyword_value_quoting_and_escapes() {
        // Doubling a quote is not an escape in libpq: the stray text is an error, and
        // it is not repeated because it belongs to a password.
        let e = parse(r"password='it''s' user='a b'").unwrap_err();
        assert!(!e.contains("'s'"), "{e}");
        assert_eq!(kv(r"user='a b'"), pairs(&[("user", "a b")]));
        assert_eq!(
            kv(r"password='it\'s a \\ test' dbname=''"),
            pairs(&[("password", r"it's a \ test"), ("dbname", "")])
        );
        // Backslash escapes work in unquoted values too.
        assert_eq!(
            kv(r"password=a\ b\\c host=x"),
            pairs(&[("password", r"a b\c"), ("host", "x")])
        );
        // A quoted value may be followed directly by the next keyword.
        assert_eq!(
            kv("user='x'dbname=y"),
            pairs(&[("user", "x"), ("dbname", "y")])
        );
    }

    #[test]
    fn keyword_value_errors() {
        assert_eq!(
            parse("host=db1 foo=bar"),
            Err("invalid connection option \"foo\"".to_string())
        );
        assert_eq!(
            parse("host db1"),
            Err("missing \"=\" after \"host\" in connection info string".to_string())
        );
        assert_eq!(
            parse("password='abc"),
            Err("unterminated quoted string in connection info string".to_string())
        );
        assert_eq!(
            parse(r"password='abc\"),
            Err("unterminated quoted string in connection info string".to_string())
        );
        // The second half of an unquoted password is not repeated.
        let e = parse("password=my secretword host=x").unwrap_err();
        assert!(!e.contains("secretword"), "{e}");
        assert!(e.contains("quote values"), "{e}");
    }

    #[test]
    fn requiressl_maps_to_sslmode() {
        assert_eq!(kv("requiressl=1"), pairs(&[("sslmode", "require")]));
        assert_eq!(kv("requiressl=0"), pairs(&[("sslmode", "prefer")]));
    }

    #[test]
    fn uri_full() {
        assert_eq!(
            kv(
                "postgresql://audit:p%40ss%3Aw0rd@db1.example.com:6432/app%20db?sslmode=verify-full&application_name=x"
            ),
            pairs(&[
                ("user", "audit"),
                ("password", "p@ss:w0rd"),
                ("host", "db1.example.com"),
                ("port", "6432"),
                ("dbname", "app db"),
                ("sslmode", "verify-full"),
                ("application_name", "x"),
            ])
        );
        assert_eq!(kv("postgres://db1"), pairs(&[("host", "db1")]));
    }

    #[test]
    fn uri_password_may_contain_colon() {
        assert_eq!(
            kv("postgresql://u:a:b@h"),
            pairs(&[("user", "u"), ("password", "a:b"), ("host", "h")])
        );
    }

    #[test]
    fn uri_empty_parts_stay_unset() {
        assert_eq!(kv("postgresql://"), pairs(&[]));
        assert_eq!(kv("postgresql:///"), pairs(&[]));
        assert_eq!(kv("postgresql:///mydb"), pairs(&[("dbname", "mydb")]));
        assert_eq!(kv("postgresql://@h/"), pairs(&[("host", "h")]));
        assert_eq!(
            kv("postgresql://h:/d"),
            pairs(&[("host", "h"), ("dbname", "d")])
        );
        assert_eq!(kv("postgresql://h?"), pairs(&[("host", "h")]));
    }

    #[test]
    fn uri_ipv6() {
        assert_eq!(
            kv("postgresql://[::1]:5433/db"),
            pairs(&[("host", "::1"), ("port", "5433"), ("dbname", "db")])
        );
        assert_eq!(
            kv("postgresql://[2001:db8::7]"),
            pairs(&[("host", "2001:db8::7")])
        );
        assert_eq!(
            kv("postgresql://[::1]?sslmode=disable"),
            pairs(&[("host", "::1"), ("sslmode", "disable")])
        );
        assert!(
            parse("postgresql://[::1")
                .unwrap_err()
                .contains("matching \"]\"")
        );
        assert!(
            parse("postgresql://[]/db")
                .unwrap_err()
                .contains("may not be empty")
        );
        assert!(
            parse("postgresql://[::1]x/db")
                .unwrap_err()
                .contains("unexpected character \"x\"")
        );
    }

    #[test]
    fn uri_unix_socket() {
        assert_eq!(
            kv("postgresql://%2Fvar%2Frun%2Fpostgresql/db"),
            pairs(&[("host", "/var/run/postgresql"), ("dbname", "db")])
        );
        assert_eq!(
            kv("postgresql:///db?host=/tmp&port=5433"),
            pairs(&[("dbname", "db"), ("host", "/tmp"), ("port", "5433")])
        );
        // A query parameter overrides the netloc, as in libpq.
        assert_eq!(
            kv("postgresql://h1/db?host=h2"),
            pairs(&[("host", "h1"), ("dbname", "db"), ("host", "h2")])
        );
    }

    #[test]
    fn uri_multiple_hosts_are_joined() {
        assert_eq!(
            kv("postgresql://h1:5432,h2:5433/db"),
            pairs(&[("host", "h1,h2"), ("port", "5432,5433"), ("dbname", "db")])
        );
    }

    #[test]
    fn uri_params() {
        assert_eq!(
            kv("postgresql://h?ssl=true"),
            pairs(&[("host", "h"), ("sslmode", "require")])
        );
        assert_eq!(
            kv("postgresql://h?application_name=a%26b&connect_timeout=5&"),
            pairs(&[
                ("host", "h"),
                ("application_name", "a&b"),
                ("connect_timeout", "5")
            ])
        );
        assert_eq!(
            parse("postgresql://h?foo=1"),
            Err("invalid URI query parameter: \"foo\"".to_string())
        );
        assert!(
            parse("postgresql://h?sslmode")
                .unwrap_err()
                .contains("missing key/value separator")
        );
        assert!(
            parse("postgresql://h?a=b=c")
                .unwrap_err()
                .contains("extra key/value separator")
        );
    }

    #[test]
    fn uri_decoding_errors_never_show_the_password() {
        let e = parse("postgresql://u:s3cret%zz@h/db").unwrap_err();
        assert!(
            e.contains("invalid percent-encoded token in URI password"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = parse("postgresql://h/db?password=s3cret%0").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let e = parse("postgresql://u:s3cret@[::1").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(parse("postgresql://h/d%00b").unwrap_err().contains("%00"));
        assert!(parse("postgresql://h/d%zzb").unwrap_err().contains("d%zzb"));
    }

    #[test]
    fn connection_string_detection() {
        assert!(is_connection_string("postgresql://x"));
        assert!(is_connection_string("postgres://"));
        assert!(is_connection_string("host=x"));
        assert!(!is_connection_string("mydb"));
        assert!(!is_connection_string("postgresql:/x"));
    }
}
