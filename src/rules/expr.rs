//! The expression engine: CEL behind one small interface.
//!
//! Everything that knows about the `cel` crate lives here: the environment with
//! pgready's helper functions, compilation with positions, the AST walk that finds
//! which fact sections an expression reads, the JSON → CEL conversion (integers stay
//! `int`), and evaluation into plain Rust values.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr};
use cel::common::types::{CelInt, CelString};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value};

/// A compiled expression with its source text.
pub struct Compiled {
    pub source: String,
    program: Program,
    /// Free variables the expression reads (fact sections, `now`, `params`).
    pub roots: BTreeSet<String>,
    /// Functions called (for linting unknown names).
    pub functions: BTreeSet<String>,
    /// `params.x` names read.
    pub params: BTreeSet<String>,
    /// Regex literals passed to `matches` (checked at load time).
    pub regexes: Vec<String>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Compiled").field(&self.source).finish()
    }
}

/// A compile error at a (1-based line, 1-based column) of the expression.
#[derive(Debug)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why an evaluation failed.
#[derive(Debug)]
pub enum EvalError {
    /// A map key was missing (a fact that was not there).
    NoSuchKey(String),
    /// Anything else: a broken rule.
    Other(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::NoSuchKey(k) => write!(f, "no such key: {k}"),
            EvalError::Other(m) => f.write_str(m),
        }
    }
}

/// The shared CEL environment (standard library, strings extension, pgready helpers).
pub fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(build_env()))
}

fn build_env() -> Env {
    let mut env = Env::stdlib();
    // These registrations only fail on a duplicate name, which is a programming error
    // caught by the unit tests below; the environment is still usable without them.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = cel::add_overload!(env, fn pg_bytes: (CelString) -> Result<CelInt>, name = "pg_bytes");
    let _ = cel::add_overload!(env, fn fmt_bytes: (CelInt) -> CelString, name = "fmt_bytes");
    let _ = cel::add_overload!(env, fn fmt_ms: (CelInt) -> CelString, name = "fmt_ms");
    env
}

/// Names of the functions pgready adds, plus the CEL standard library and strings
/// extension, so the linter can reject a typo such as `pg_bites(…)`.
pub const KNOWN_FUNCTIONS: &[&str] = &[
    // pgready
    "pg_bytes",
    "fmt_bytes",
    "fmt_ms",
    // CEL standard library and macros
    "size",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "orValue",
    "or",
    "hasValue",
    "value",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    // strings extension
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "strings.quote",
    "format",
    "reverse",
];

fn pg_bytes(s: &CelString) -> Result<CelInt, ExecutionError> {
    parse_size(s.inner())
        .map(CelInt::from)
        .map_err(|m| ExecutionError::function_error("pg_bytes", m))
}

fn fmt_bytes(n: &CelInt) -> CelString<'static> {
    CelString::from(human_bytes(*n.inner()))
}

fn fmt_ms(n: &CelInt) -> CelString<'static> {
    CelString::from(human_ms(*n.inner()))
}

/// Parse a PostgreSQL-style memory size (`128MB`, `8kB`, `1GB`, `512`) into bytes.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("not a size: '{s}' (expected e.g. 128MB)"))?;
    let mult: i64 = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use B, kB, MB, GB or TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// `134217728` → `128 MB`; negative values (PostgreSQL sentinels) are shown as is.
pub fn human_bytes(n: i64) -> String {
    if n < 0 {
        return n.to_string();
    }
    const UNITS: [(&str, i64); 4] = [
        ("TB", 1 << 40),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("kB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            let whole = n / size;
            let tenth = (n % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{n} B")
}

/// `300000` → `5 min`; negative values are shown as is.
pub fn human_ms(n: i64) -> String {
    if n < 0 {
        return n.to_string();
    }
    const UNITS: [(&str, i64); 4] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ];
    for (unit, size) in UNITS {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    if n >= 1000 {
        return format!("{:.1} s", n as f64 / 1000.0);
    }
    format!("{n} ms")
}

/// Compile `source` with the shared environment and analyse it.
pub fn compile(source: &str) -> Result<Compiled, Vec<CompileError>> {
    let program = env().compile(source).map_err(|errs| {
        errs.errors
            .into_iter()
            .map(|e| CompileError {
                line: e.pos.0.max(1) as usize,
                column: (e.pos.1.max(0) as usize) + 1,
                message: e.msg,
            })
            .collect::<Vec<_>>()
    })?;
    let mut walk = Walk::default();
    walk.expr(program.expression(), &mut Vec::new());
    Ok(Compiled {
        source: source.to_string(),
        program,
        roots: walk.roots,
        functions: walk.functions,
        params: walk.params,
        regexes: walk.regexes,
    })
}

#[derive(Default)]
struct Walk {
    roots: BTreeSet<String>,
    functions: BTreeSet<String>,
    params: BTreeSet<String>,
    regexes: Vec<String>,
}

impl Walk {
    fn expr(&mut self, e: &IdedExpr, scope: &mut Vec<String>) {
        match &e.expr {
            Expr::Ident(name) => {
                if !scope.iter().any(|s| s == name) {
                    self.roots.insert(name.clone());
                }
            }
            Expr::Select(sel) => {
                if let Expr::Ident(root) = &sel.operand.expr
                    && root == "params"
                    && !scope.iter().any(|s| s == "params")
                {
                    self.params.insert(sel.field.clone());
                }
                self.expr(&sel.operand, scope);
            }
            Expr::Call(call) => {
                let name = &call.func_name;
                if !(name.starts_with('_') || name.starts_with('@') || name.starts_with('!')) {
                    self.functions.insert(name.clone());
                }
                if name == "matches"
                    && let Some(arg) = call.args.last()
                    && let Expr::Literal(cel::common::ast::LiteralValue::String(s)) = &arg.expr
                {
                    self.regexes.push(s.to_string());
                }
                if let Some(t) = &call.target {
                    self.expr(t, scope);
                }
                for a in &call.args {
                    self.expr(a, scope);
                }
            }
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range, scope);
                self.expr(&c.accu_init, scope);
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                scope.push(c.iter_var.clone());
                scope.push(c.accu_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    scope.push(v2.clone());
                }
                self.expr(&c.loop_cond, scope);
                self.expr(&c.loop_step, scope);
                self.expr(&c.result, scope);
                scope.truncate(scope.len() - pushed);
            }
            Expr::List(l) => {
                for el in &l.elements {
                    self.expr(el, scope);
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.expr(&me.key, scope);
                        self.expr(&me.value, scope);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => self.expr(&f.value, scope),
                        EntryExpr::MapEntry(me) => {
                            self.expr(&me.key, scope);
                            self.expr(&me.value, scope);
                        }
                    }
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// Convert JSON into a CEL value, keeping integers as `int` (serde would make
/// non-negative integers `uint`, which breaks arithmetic with `int` literals).
pub fn to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(to_cel).collect())),
        serde_json::Value::Object(o) => {
            let map: std::collections::HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Convert a CEL result back into JSON for the report.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m
                .map
                .iter()
                .map(|(k, v)| (key_string(k), to_json(v)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        other => serde_json::Value::String(format!("{other:?}")),
    }
}

fn key_string(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.to_string(),
    }
}

/// A root context holding the bound fact sections. Build once per facts snapshot.
pub struct Scope<'a> {
    ctx: Context<'a, 'a>,
}

impl<'a> Scope<'a> {
    pub fn new() -> Self {
        Self {
            ctx: Context::with_env(env().clone()),
        }
    }

    pub fn bind(&mut self, name: &str, value: Value) {
        self.ctx.add_variable_from_value(name, value);
    }

    /// Evaluate `expr` with `params` bound in a child scope.
    pub fn eval(&self, expr: &Compiled, params: &Value) -> Result<Value, EvalError> {
        self.eval_with(expr, params, None)
    }

    /// [`Scope::eval`] with `rows` (the result of a rule's own query) bound too.
    pub fn eval_with(
        &self,
        expr: &Compiled,
        params: &Value,
        rows: Option<&Value>,
    ) -> Result<Value, EvalError> {
        let mut child = self.ctx.new_inner_scope();
        child.add_variable_from_value("params", params.clone());
        if let Some(rows) = rows {
            child.add_variable_from_value("rows", rows.clone());
        }
        expr.program.execute(&child).map_err(|e| match e {
            ExecutionError::NoSuchKey(k) => EvalError::NoSuchKey(k.to_string()),
            other => EvalError::Other(other.to_string()),
        })
    }
}

impl Default for Scope<'_> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, facts: serde_json::Value) -> Result<Value, EvalError> {
        let c = compile(src).map_err(|e| EvalError::Other(e[0].message.clone()))?;
        let mut s = Scope::new();
        if let serde_json::Value::Object(o) = facts {
            for (k, v) in o {
                s.bind(&k, to_cel(&v));
            }
        }
        s.eval(
            &c,
            &Value::Map(Map {
                map: Arc::new(Default::default()),
            }),
        )
    }

    #[test]
    fn integers_stay_int_for_arithmetic() {
        let v = eval(
            "host.cpus * 2 == 4 && settings.shared_buffers * 4 <= host.mem_bytes",
            serde_json::json!({"host": {"cpus": 2, "mem_bytes": 1024}, "settings": {"shared_buffers": 256}}),
        );
        assert!(matches!(v, Ok(Value::Bool(true))), "{v:?}");
    }

    #[test]
    fn helpers_work() {
        let v = eval(
            "pg_bytes('128MB') == 134217728 && fmt_bytes(134217728) == '128 MB' && fmt_ms(300000) == '5 min'",
            serde_json::json!({}),
        );
        assert!(matches!(v, Ok(Value::Bool(true))), "{v:?}");
        let v = eval(
            "'a, b'.split(',').map(x, x.trim()).join('|') == 'a|b'",
            serde_json::json!({}),
        );
        assert!(matches!(v, Ok(Value::Bool(true))), "{v:?}");
    }

    #[test]
    fn missing_key_is_reported_as_such() {
        let v = eval("settings.nope == 1", serde_json::json!({"settings": {}}));
        assert!(matches!(v, Err(EvalError::NoSuchKey(k)) if k == "nope"));
    }

    #[test]
    fn walk_finds_roots_but_not_loop_variables() {
        let c = compile("hba.exists(r, r.auth_method == 'trust') && settings.ssl && params.max > now && [1].all(hba, hba > 0)")
            .map_err(|e| e[0].message.clone());
        let c = c.as_ref().map_err(String::as_str);
        let Ok(c) = c else { panic!("{c:?}") };
        let roots: Vec<_> = c.roots.iter().map(String::as_str).collect();
        assert_eq!(roots, ["hba", "now", "params", "settings"]);
        assert!(c.params.contains("max"));
        // Macros (exists, all, map, filter, has) are expanded into comprehensions.
        assert!(c.functions.is_empty(), "{:?}", c.functions);
    }

    #[test]
    fn compile_errors_have_positions() {
        let Err(errs) = compile("settings.ssl == ") else {
            panic!("should not compile")
        };
        assert_eq!(errs[0].line, 1);
        assert!(errs[0].column >= 15, "{:?}", errs[0]);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("8kB"), Ok(8192));
        assert!(parse_size("12XB").is_err());
        assert_eq!(human_bytes(6 * (1 << 30) + (1 << 29)), "6.5 GB");
        assert_eq!(human_bytes(-1), "-1");
        assert_eq!(human_ms(600_000), "10 min");
        assert_eq!(human_ms(1500), "1.5 s");
        assert_eq!(human_ms(250), "250 ms");
    }
}
