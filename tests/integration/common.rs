//! Helpers: run the binary, read Parquet output back, temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use sentiflow_jobs::io::store::Location;
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::tables::register_parquet_table;
use sentiflow_jobs::{ContextOptions, JobContext};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_tweets() -> String {
    repo().join("sample_data/tweets").display().to_string()
}

pub fn sentiflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sentiflow"))
        .args(args)
        .env("SENTIFLOW_NO_PROGRESS", "1")
        .output()
        .expect("the sentiflow binary runs")
}

/// Runs the binary and returns stdout; fails the test with stderr otherwise.
pub fn ok(args: &[&str]) -> String {
    let out = sentiflow(args);
    assert!(
        out.status.success(),
        "sentiflow {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary expecting failure: returns (exit code, stderr).
pub fn fails(args: &[&str]) -> (i32, String) {
    let out = sentiflow(args);
    assert!(
        !out.status.success(),
        "sentiflow {args:?} should fail, printed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs SQL over tables written under `root` (any mix of Table variants).
pub async fn query(root: &str, tables: &[Table], sql: &str) -> Vec<RecordBatch> {
    let jc = JobContext::new(ContextOptions::default()).expect("context");
    let root = Location::parse(root).expect("root");
    for t in tables {
        register_parquet_table(&jc, t.sql_name(), *t, &root.child(t.dir())).expect("register");
    }
    jc.ctx.sql(sql).await.expect("plan").collect().await.expect("run")
}

pub fn render(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("format").to_string()
}

/// The single i64 a one-cell query returned.
pub fn scalar_i64(batches: &[RecordBatch]) -> i64 {
    use datafusion::arrow::array::{Array, Int64Array};
    let b = &batches[0];
    b.column(0).as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)).expect("int64 cell")
}

/// All files below a directory, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The shard state documents (JSON) in a local checkpoint directory.
pub fn shard_states(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

/// `sentiflow generate` of `rows` tweets (seed, first event time, optional span) into `to`; its summary.
pub fn generate_into(to: &str, rows: u64, seed: u64, start: &str, span: Option<&str>) -> String {
    let (rows, seed) = (rows.to_string(), seed.to_string());
    let mut args = vec!["generate", "--rows", &rows, "--seed", &seed, "--start", start, "--to", to];
    if let Some(span) = span {
        args.extend(["--span", span]);
    }
    ok(&args)
}

/// `sentiflow sql --format csv` over a data root.
pub fn sql_csv(data: &str, sql: &str) -> String {
    ok(&["sql", "--data", data, "--format", "csv", "-c", sql])
}
