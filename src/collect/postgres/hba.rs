//! `hba`: the rules of `pg_hba_file_rules`, with a computed `prefix_len`.

use std::net::IpAddr;

use serde_json::{Value, json};
use tokio_postgres::Row;

use super::col;

/// The query for a server of `version_num`: `rule_number` and `file_name` exist from 16 on.
/// The view's own row order (the order rules are matched in) is kept.
pub(crate) fn sql(version_num: i32) -> &'static str {
    if version_num >= 160000 {
        "SELECT rule_number, file_name, line_number, type, database, user_name, address, \
                netmask, auth_method, options, error \
         FROM pg_catalog.pg_hba_file_rules"
    } else {
        "SELECT NULL::int4 AS rule_number, NULL::text AS file_name, line_number, type, \
                database, user_name, address, netmask, auth_method, options, error \
         FROM pg_catalog.pg_hba_file_rules"
    }
}

/// Parse an address as PostgreSQL prints it (an IPv6 zone such as `%eth0` is ignored).
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.split_once('%').map_or(s, |(ip, _zone)| ip);
    s.parse().ok()
}

/// Number of leading one bits of a netmask; `None` when the mask is not contiguous.
fn mask_prefix(mask: IpAddr) -> Option<u8> {
    let (bits, width): (u128, u32) = match mask {
        IpAddr::V4(m) => (u128::from(u32::from(m)) << 96, 32),
        IpAddr::V6(m) => (u128::from(m), 128),
    };
    let ones = bits.leading_ones();
    // Contiguous: everything after the leading ones is zero.
    let rest = bits.checked_shl(ones).unwrap_or(0);
    (rest == 0 && ones <= width).then_some(ones as u8)
}

/// Prefix length of an hba address: from `address/len` (CIDR) or from `address` +
/// `netmask`. `None` for keywords (`all`, `samehost`, `samenet`), host names, `local`
/// rules, a mask of another address family, and a non-contiguous mask.
pub(crate) fn prefix_len(address: Option<&str>, netmask: Option<&str>) -> Option<u8> {
    let address = address?;
    if let Some((ip, len)) = address.split_once('/') {
        let ip = parse_ip(ip)?;
        let len: u8 = len.trim().parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return (len <= max).then_some(len);
    }
    let ip = parse_ip(address)?;
    let mask = parse_ip(netmask?)?;
    if ip.is_ipv4() != mask.is_ipv4() {
        return None;
    }
    mask_prefix(mask)
}

/// Build the `hba` list. `hba_file` names the file before 16, when the view has no
/// `file_name` column.
pub(crate) fn build(rows: &[Row], hba_file: &str) -> Result<Value, String> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let address: Option<String> = col(row, "address")?;
        let netmask: Option<String> = col(row, "netmask")?;
        let file_name: Option<String> = col(row, "file_name")?;
        out.push(json!({
            "line_number": col::<Option<i32>>(row, "line_number")?,
            "file_name": file_name.unwrap_or_else(|| hba_file.to_string()),
            "rule_number": col::<Option<i32>>(row, "rule_number")?,
            "type": col::<Option<String>>(row, "type")?,
            "database": col::<Option<Vec<String>>>(row, "database")?.unwrap_or_default(),
            "user_name": col::<Option<Vec<String>>>(row, "user_name")?.unwrap_or_default(),
            "prefix_len": prefix_len(address.as_deref(), netmask.as_deref()),
            "address": address,
            "netmask": netmask,
            "auth_method": col::<Option<String>>(row, "auth_method")?,
            "options": col::<Option<Vec<String>>>(row, "options")?.unwrap_or_default(),
            "error": col::<Option<String>>(row, "error")?,
        }));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_netmask() {
        assert_eq!(prefix_len(Some("0.0.0.0"), Some("0.0.0.0")), Some(0));
        assert_eq!(
            prefix_len(Some("127.0.0.1"), Some("255.255.255.255")),
            Some(32)
        );
        assert_eq!(prefix_len(Some("10.0.0.0"), Some("255.0.0.0")), Some(8));
        assert_eq!(
            prefix_len(Some("192.168.1.0"), Some("255.255.255.0")),
            Some(24)
        );
        assert_eq!(
            prefix_len(Some("172.16.0.0"), Some("255.240.0.0")),
            Some(12)
        );
        assert_eq!(
            prefix_len(Some("10.1.2.3"), Some("255.255.255.254")),
            Some(31)
        );
    }

    #[test]
    fn ipv6_netmask() {
        assert_eq!(prefix_len(Some("::"), Some("::")), Some(0));
        assert_eq!(
            prefix_len(Some("::1"), Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(128)
        );
        assert_eq!(
            prefix_len(Some("fe80::"), Some("ffff:ffff:ffff:ffff::")),
            Some(64)
        );
        assert_eq!(
            prefix_len(Some("2001:db8::"), Some("ffff:ffff::")),
            Some(32)
        );
        assert_eq!(
            prefix_len(Some("fe80::1%eth0"), Some("ffff:ffff:ffff:ffff::")),
            Some(64)
        );
    }

    #[test]
    fn cidr_notation() {
        assert_eq!(prefix_len(Some("0.0.0.0/0"), None), Some(0));
        assert_eq!(prefix_len(Some("10.0.0.0/8"), None), Some(8));
        assert_eq!(prefix_len(Some("::/0"), None), Some(0));
        assert_eq!(prefix_len(Some("::1/128"), None), Some(128));
        assert_eq!(prefix_len(Some("10.0.0.0/33"), None), None);
        assert_eq!(prefix_len(Some("::1/129"), None), None);
        assert_eq!(prefix_len(Some("host.example/8"), None), None);
    }

    #[test]
    fn keywords_and_names_have_no_prefix() {
        // `all` and 0.0.0.0/0 must stay distinguishable.
        assert_eq!(prefix_len(Some("all"), None), None);
        assert_eq!(prefix_len(Some("samehost"), None), None);
        assert_eq!(prefix_len(Some("samenet"), None), None);
        assert_eq!(prefix_len(Some("db.example.com"), None), None);
        assert_eq!(prefix_len(Some(".example.com"), None), None);
        assert_eq!(prefix_len(None, None), None);
    }

    #[test]
    fn odd_masks() {
        assert_eq!(prefix_len(Some("10.0.0.0"), Some("255.0.255.0")), None);
        assert_eq!(prefix_len(Some("10.0.0.0"), Some("ffff::")), None);
        assert_eq!(prefix_len(Some("10.0.0.0"), None), None);
        assert_eq!(prefix_len(Some("10.0.0.0"), Some("garbage")), None);
    }

    #[test]
    fn queries_follow_the_major() {
        assert!(sql(180000).contains("rule_number, file_name"));
        assert!(sql(160000).contains("rule_number, file_name"));
        assert!(sql(150008).contains("NULL::int4 AS rule_number"));
        assert!(sql(140000).contains("NULL::text AS file_name"));
    }
}
