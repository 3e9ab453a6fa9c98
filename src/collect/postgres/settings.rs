//! `settings` and `settings_meta`: `pg_settings` typed and normalised.
//!
//! Integers and reals with a byte unit become bytes, with a time unit milliseconds;
//! negative values are sentinels (`-1` = disabled/automatic) and are kept as they are.

use serde_json::{Map, Number, Value, json};
use tokio_postgres::Row;

use super::col;

/// What one unit of a `pg_settings.unit` is worth in the normalised scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Bytes per unit.
    Bytes(i64),
    /// Milliseconds per unit, as the fraction `num / den` (`us` is 1/1000).
    Millis { num: i64, den: i64 },
}

/// Parse a `pg_settings.unit`: an optional count followed by a base unit (`8kB`, `16MB`,
/// `kB`, `ms`, `min`, …). `None` for a unit pgready does not know.
fn scale_of(unit: &str) -> Option<Scale> {
    let digits = unit.bytes().take_while(u8::is_ascii_digit).count();
    let (count, base) = unit.split_at(digits);
    let count: i64 = if count.is_empty() {
        1
    } else {
        count.parse().ok()?
    };
    let scale = match base {
        "B" => Scale::Bytes(1),
        "kB" => Scale::Bytes(1 << 10),
        "MB" => Scale::Bytes(1 << 20),
        "GB" => Scale::Bytes(1 << 30),
        "TB" => Scale::Bytes(1 << 40),
        "us" => Scale::Millis { num: 1, den: 1000 },
        "ms" => Scale::Millis { num: 1, den: 1 },
        "s" => Scale::Millis { num: 1000, den: 1 },
        "min" => Scale::Millis {
            num: 60_000,
            den: 1,
        },
        "h" => Scale::Millis {
            num: 3_600_000,
            den: 1,
        },
        "d" => Scale::Millis {
            num: 86_400_000,
            den: 1,
        },
        _ => return None,
    };
    Some(match scale {
        Scale::Bytes(b) => Scale::Bytes(b.checked_mul(count)?),
        Scale::Millis { num, den } => Scale::Millis {
            num: num.checked_mul(count)?,
            den,
        },
    })
}

/// Type and normalise one `pg_settings` value (`setting`, `boot_val` or `reset_val`)
/// according to its `vartype` and `unit`. `Ok(Value::Null)` for a NULL value; `Err` with
/// a short explanation when the text does not fit the declared type or unit.
pub(crate) fn normalise(
    vartype: &str,
    unit: Option<&str>,
    raw: Option<&str>,
) -> Result<Value, String> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let unit = unit.filter(|u| !u.is_empty());
    let scale = match unit {
        Some(u) => Some(scale_of(u).ok_or_else(|| format!("unknown unit {u:?}"))?),
        None => None,
    };
    match vartype {
        "bool" => match raw {
            "on" | "true" => Ok(Value::Bool(true)),
            "off" | "false" => Ok(Value::Bool(false)),
            other => Err(format!("not a boolean: {other:?}")),
        },
        "integer" => {
            let v: i64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("not an integer: {raw:?}"))?;
            let out = match scale {
                _ if v < 0 => Some(v),
                None => Some(v),
                Some(Scale::Bytes(b)) => v.checked_mul(b),
                // Positive values only here, so integer division rounds down.
                Some(Scale::Millis { num, den }) => v.checked_mul(num).map(|x| x / den),
            };
            out.map(Value::from)
                .ok_or_else(|| format!("{raw} {} overflows 64 bits", unit.unwrap_or("")))
        }
        "real" => {
            let v: f64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("not a number: {raw:?}"))?;
            let out = match scale {
                _ if v < 0.0 => v,
                None => v,
                Some(Scale::Bytes(b)) => v * b as f64,
                Some(Scale::Millis { num, den }) => v * num as f64 / den as f64,
            };
            Number::from_f64(out)
                .map(Value::Number)
                .ok_or_else(|| format!("not a finite number: {raw:?}"))
        }
        // enum, string, and anything a future server may add: the text as it is.
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// The value to report for a setting as pgready's own session sees it.
///
/// pgready's session runs `SET statement_timeout`, `lock_timeout`,
/// `idle_in_transaction_session_timeout` and `default_transaction_read_only` to bound
/// itself; `pg_settings` then shows pgready's values with source `session`. The server's
/// value for the audit role is `reset_val` (what RESET returns to: configuration file,
/// ALTER SYSTEM, database and role settings). Its source is not exposed: it is reported as
/// `default` when it equals `boot_val` and `unknown` otherwise.
fn undo_session_set(
    raw: Option<String>,
    source: Option<String>,
    reset: Option<&str>,
    boot: Option<&str>,
) -> (Option<String>, Option<String>) {
    if source.as_deref() != Some("session") {
        return (raw, source);
    }
    let source = if reset == boot { "default" } else { "unknown" };
    (reset.map(str::to_string), Some(source.to_string()))
}

/// What the settings query produced.
pub(crate) struct Settings {
    pub settings: Map<String, Value>,
    pub meta: Map<String, Value>,
    /// GUCs whose value could not be typed (kept as null), with why.
    pub problems: Vec<String>,
}

impl Settings {
    /// A setting's raw text, e.g. to read `data_directory` or `hba_file`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.meta.get(name)?.get("raw")?.as_str()
    }
}

pub(crate) const SQL: &str = "\
SELECT name, setting, unit, vartype, source, boot_val, reset_val, context, \
       pending_restart, enumvals, sourcefile, sourceline \
FROM pg_catalog.pg_settings ORDER BY name";

/// Build both maps from the rows of [`SQL`].
pub(crate) fn build(rows: &[Row]) -> Result<Settings, String> {
    let mut out = Settings {
        settings: Map::new(),
        meta: Map::new(),
        problems: Vec::new(),
    };
    for row in rows {
        let name: String = col(row, "name")?;
        let raw: Option<String> = col(row, "setting")?;
        let unit: Option<String> = col(row, "unit")?;
        let vartype: String = col(row, "vartype")?;
        let boot: Option<String> = col(row, "boot_val")?;
        let reset: Option<String> = col(row, "reset_val")?;
        let source: Option<String> = col(row, "source")?;
        let (raw, source) = undo_session_set(raw, source, reset.as_deref(), boot.as_deref());
        let mut typed = |what: &str, v: Option<&str>| match normalise(&vartype, unit.as_deref(), v)
        {
            Ok(v) => v,
            Err(e) => {
                out.problems.push(format!("{name} ({what}): {e}"));
                Value::Null
            }
        };
        let value = typed("setting", raw.as_deref());
        let boot_val = typed("boot_val", boot.as_deref());
        let reset_val = typed("reset_val", reset.as_deref());
        let meta = json!({
            "raw": raw,
            "unit": unit,
            "vartype": vartype,
            "source": source,
            "boot_val": boot_val,
            "reset_val": reset_val,
            "context": col::<Option<String>>(row, "context")?,
            "pending_restart": col::<Option<bool>>(row, "pending_restart")?,
            "enumvals": col::<Option<Vec<String>>>(row, "enumvals")?,
            "sourcefile": col::<Option<String>>(row, "sourcefile")?,
            "sourceline": col::<Option<i32>>(row, "sourceline")?,
        });
        out.settings.insert(name.clone(), value);
        out.meta.insert(name, meta);
    }
    Ok(out)
}

/// The entries of the configuration files (postgresql.conf, its includes,
/// postgresql.auto.conf, as they are on disk now) that carry an error, in processing
/// order, with the setting's context and the value the server runs with.
pub(crate) const FILE_ERRORS_SQL: &str = "\
SELECT f.sourcefile, f.sourceline, f.name, f.setting, f.error, s.context, \
       CASE WHEN f.name IS NOT NULL THEN pg_catalog.current_setting(f.name, true) END AS running \
FROM pg_catalog.pg_file_settings f \
LEFT JOIN pg_catalog.pg_settings s ON s.name = f.name \
WHERE f.error IS NOT NULL ORDER BY f.seqno";

/// `{errors: [{file, line, name, setting, error, context, running}]}` from [`FILE_ERRORS_SQL`].
pub(crate) fn file_errors(rows: &[Row]) -> Result<Value, String> {
    let mut errors = Vec::new();
    for row in rows {
        errors.push(json!({
            "file": col::<Option<String>>(row, "sourcefile")?,
            "line": col::<Option<i32>>(row, "sourceline")?,
            "name": col::<Option<String>>(row, "name")?,
            "setting": col::<Option<String>>(row, "setting")?,
            "error": col::<Option<String>>(row, "error")?,
            "context": col::<Option<String>>(row, "context")?,
            "running": col::<Option<String>>(row, "running")?,
        }));
    }
    Ok(json!({ "errors": errors }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(vartype: &str, unit: Option<&str>, raw: &str) -> Value {
        normalise(vartype, unit, Some(raw)).unwrap()
    }

    #[test]
    fn byte_units_become_bytes() {
        assert_eq!(n("integer", Some("B"), "16777216"), json!(16_777_216));
        assert_eq!(n("integer", Some("kB"), "4096"), json!(4_194_304));
        assert_eq!(n("integer", Some("MB"), "1024"), json!(1_073_741_824_i64));
        assert_eq!(n("integer", Some("GB"), "2"), json!(2_147_483_648_i64));
        assert_eq!(n("integer", Some("TB"), "1"), json!(1_099_511_627_776_i64));
        // shared_buffers = 128MB is reported as 16384 blocks of 8kB
        assert_eq!(n("integer", Some("8kB"), "16384"), json!(134_217_728));
        assert_eq!(n("integer", Some("16kB"), "2"), json!(32_768));
        assert_eq!(n("integer", Some("16MB"), "5"), json!(83_886_080));
    }

    #[test]
    fn time_units_become_milliseconds() {
        assert_eq!(n("integer", Some("ms"), "250"), json!(250));
        assert_eq!(n("integer", Some("s"), "300"), json!(300_000));
        assert_eq!(n("integer", Some("min"), "1440"), json!(86_400_000));
        assert_eq!(n("integer", Some("h"), "2"), json!(7_200_000));
        assert_eq!(n("integer", Some("d"), "1"), json!(86_400_000));
        // us: divided, rounded down, still an integer
        assert_eq!(n("integer", Some("us"), "1500"), json!(1));
        assert_eq!(n("integer", Some("us"), "999"), json!(0));
        assert!(n("integer", Some("us"), "1500").is_i64());
    }

    #[test]
    fn negative_sentinels_are_kept() {
        assert_eq!(n("integer", Some("8kB"), "-1"), json!(-1));
        assert_eq!(n("integer", Some("kB"), "-1"), json!(-1));
        assert_eq!(n("integer", Some("ms"), "-1"), json!(-1));
        assert_eq!(n("integer", Some("min"), "-1"), json!(-1));
        assert_eq!(n("integer", Some("us"), "-1"), json!(-1));
        assert_eq!(n("integer", None, "-1"), json!(-1));
        assert_eq!(n("real", Some("ms"), "-1"), json!(-1.0));
    }

    #[test]
    fn reals_with_units() {
        // autovacuum_vacuum_cost_delay = 2ms, vacuum_cost_delay = 0
        assert_eq!(n("real", Some("ms"), "2"), json!(2.0));
        assert_eq!(n("real", Some("ms"), "0"), json!(0.0));
        assert_eq!(n("real", Some("ms"), "0.5"), json!(0.5));
        assert_eq!(n("real", Some("s"), "1.5"), json!(1500.0));
        assert_eq!(n("real", Some("us"), "250"), json!(0.25));
        assert_eq!(n("real", Some("kB"), "1.5"), json!(1536.0));
        assert!(n("real", Some("ms"), "2").is_f64());
    }

    #[test]
    fn reals_without_units() {
        assert_eq!(n("real", None, "0.9"), json!(0.9));
        assert_eq!(n("real", None, "4"), json!(4.0));
        assert_eq!(n("real", None, "1e+10"), json!(1e10));
        assert!(normalise("real", None, Some("NaN")).is_err());
    }

    #[test]
    fn integers_without_units_stay_integers() {
        assert_eq!(n("integer", None, "100"), json!(100));
        assert_eq!(n("integer", Some(""), "100"), json!(100));
        assert_eq!(n("integer", None, "2147483647"), json!(2_147_483_647));
        assert!(n("integer", None, "100").is_i64());
    }

    #[test]
    fn largest_values_do_not_overflow() {
        // INT_MAX of 16MB units and of days still fit in i64
        assert_eq!(
            n("integer", Some("16MB"), "2147483647"),
            json!(2_147_483_647_i64 * 16 * 1024 * 1024)
        );
        assert_eq!(
            n("integer", Some("d"), "2147483647"),
            json!(2_147_483_647_i64 * 86_400_000)
        );
        assert!(normalise("integer", Some("TB"), Some("9223372036854775807")).is_err());
    }

    #[test]
    fn bools_enums_strings() {
        assert_eq!(n("bool", None, "on"), json!(true));
        assert_eq!(n("bool", None, "off"), json!(false));
        assert!(normalise("bool", None, Some("maybe")).is_err());
        assert_eq!(n("enum", None, "replica"), json!("replica"));
        assert_eq!(n("string", None, ""), json!(""));
        // log_connections: a bool before 18, a string list in 18 — reported as the row says
        assert_eq!(
            n("string", None, "receipt,authentication"),
            json!("receipt,authentication")
        );
        assert_eq!(n("bool", None, "off"), json!(false));
    }

    #[test]
    fn nulls_and_garbage() {
        assert_eq!(normalise("integer", Some("kB"), None), Ok(Value::Null));
        assert!(normalise("integer", Some("kB"), Some("12abc")).is_err());
        assert!(normalise("integer", Some("furlong"), Some("1")).is_err());
        assert!(normalise("real", None, Some("")).is_err());
    }

    #[test]
    fn pgready_own_session_settings_are_undone() {
        let s = |x: &str| Some(x.to_string());
        // statement_timeout SET by pgready, server default 0
        assert_eq!(
            undo_session_set(s("10000"), s("session"), Some("0"), Some("0")),
            (s("0"), s("default"))
        );
        // configured somewhere (file, ALTER ROLE …): the configured value, source unknown
        assert_eq!(
            undo_session_set(s("10000"), s("session"), Some("30000"), Some("0")),
            (s("30000"), s("unknown"))
        );
        // anything not SET in the session is reported as it is
        assert_eq!(
            undo_session_set(s("300"), s("configuration file"), Some("300"), Some("300")),
            (s("300"), s("configuration file"))
        );
        assert_eq!(
            undo_session_set(s("pgready"), s("client"), Some("pgready"), Some("")),
            (s("pgready"), s("client"))
        );
    }

    #[test]
    fn unit_parser() {
        assert_eq!(scale_of("8kB"), Some(Scale::Bytes(8192)));
        assert_eq!(scale_of("kB"), Some(Scale::Bytes(1024)));
        assert_eq!(scale_of("16MB"), Some(Scale::Bytes(16 << 20)));
        assert_eq!(
            scale_of("min"),
            Some(Scale::Millis {
                num: 60_000,
                den: 1
            })
        );
        assert_eq!(scale_of("us"), Some(Scale::Millis { num: 1, den: 1000 }));
        assert_eq!(scale_of("8"), None);
        assert_eq!(scale_of("kb"), None);
    }
}
