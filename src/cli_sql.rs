//! `sentiflow sql`: ad-hoc SQL over a data root, like `datafusion-cli`.

use std::io::Write;

use anyhow::{Context, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::store::{Location, list_files};
use sentiflow_jobs::tables::{register_parquet_table, register_raw_table};
use sentiflow_jobs::JobContext;

#[derive(clap::Args, Debug)]
pub struct SqlCli {
    /// Data root whose raw/, scored/, windows/, windows_by_source/ and _rejected/ become tables.
    #[arg(long, default_value = super::DEFAULT_OUT)]
    data: String,
    /// Run this SQL and exit (several statements separated by ';').
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Run the SQL in this file and exit.
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value_t = OutFormat::Table)]
    format: OutFormat,
    /// The scorer behind sentiment(), sentiment_label(), sentiment_probs(), score_sentiment().
    #[command(flatten)]
    pub scorer: crate::cli_scorer::ScorerArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OutFormat {
    Table,
    Csv,
    Json,
}

/// Registers every table found under the root; returns (name, files) pairs.
async fn register_all(jc: &JobContext, root: &Location) -> Result<Vec<(&'static str, usize)>> {
    let mut found = Vec::new();
    for t in Table::ALL {
        let loc = root.child(t.dir());
        let store = jc.stores.store(&loc.store_url)?;
        let n = list_files(store.as_ref(), &loc).await?.len();
        if n == 0 {
            continue;
        }
        match t {
            Table::Raw => {
                register_raw_table(jc, t.sql_name(), &loc).await?;
            }
            _ => register_parquet_table(jc, t.sql_name(), t, &loc)?,
        }
        found.push((t.sql_name(), n));
    }
    Ok(found)
}

/// Splits a script into statements on ';' outside quotes and comments.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut line_comment) = (false, false, false);
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if line_comment {
            if c == '\n' {
                line_comment = false;
                cur.push(c);
            }
            i += 1;
            continue;
        }
        match c {
            '-' if !single && !double && chars.get(i + 1) == Some(&'-') => {
                line_comment = true;
                i += 2;
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' if !single && !double => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        cur.push(c);
        i += 1;
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn print(batches: &[RecordBatch], format: OutFormat, out: &mut impl Write) -> Result<()> {
    match format {
        OutFormat::Table => writeln!(out, "{}", pretty_format_batches(batches)?)?,
        OutFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutFormat::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

async fn execute(jc: &JobContext, sql: &str, format: OutFormat) -> Result<()> {
    let df = jc.ctx.sql(sql).await.with_context(|| format!("sql failed: {}", short_sql(sql)))?;
    let batches = df.collect().await.with_context(|| format!("query failed: {}", short_sql(sql)))?;
    let stdout = std::io::stdout();
    print(&batches, format, &mut stdout.lock())
}

fn short_sql(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 120 { format!("{}…", &s[..s.floor_char_boundary(120)]) } else { s }
}

pub async fn run(jc: &JobContext, args: SqlCli) -> Result<()> {
    let root = Location::parse(&args.data)?;
    let tables = register_all(jc, &root).await?;
    let script = match (&args.command, &args.file) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?),
        (None, None) => None,
    };
    if let Some(script) = script {
        for stmt in statements(&script) {
            execute(jc, &stmt, args.format).await?;
        }
        return Ok(());
    }
    repl(jc, &root, &tables, args.format).await
}

async fn repl(jc: &JobContext, root: &Location, tables: &[(&str, usize)], format: OutFormat) -> Result<()> {
    use rustyline::error::ReadlineError;
    println!("sentiflow sql over {}", root.display);
    if tables.is_empty() {
        println!("no tables found there (run `sentiflow run` first); any file can still be queried: SELECT * FROM 'path/file.parquet'");
    } else {
        let list: Vec<String> = tables.iter().map(|(n, f)| format!("{n} ({f} files)")).collect();
        println!("tables: {}", list.join(", "));
    }
    println!("end statements with ';'   \\d lists tables, \\d NAME describes one, \\q quits");
    let mut rl = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".sentiflow_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() { "sentiflow> " } else { "        -> " };
        match rl.readline(prompt) {
            Ok(line) => {
                let t = line.trim();
                if buf.is_empty() && t.starts_with('\\') {
                    let _ = rl.add_history_entry(t);
                    let sql = match t.split_whitespace().collect::<Vec<_>>().as_slice() {
                        ["\\q"] => break,
                        ["\\d"] => "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name".to_string(),
                        ["\\d", name] => format!("DESCRIBE {name}"),
                        _ => {
                            println!("unknown command {t}: \\d, \\d NAME, \\q");
                            continue;
                        }
                    };
                    if let Err(e) = execute(jc, &sql, format).await {
                        eprintln!("error: {}", crate::one_line(&e));
                    }
                    continue;
                }
                buf.push_str(&line);
                buf.push('\n');
                if !t.ends_with(';') {
                    continue;
                }
                let _ = rl.add_history_entry(buf.trim());
                for stmt in statements(&buf) {
                    if let Err(e) = execute(jc, &stmt, format).await {
                        eprintln!("error: {}", crate::one_line(&e));
                    }
                }
                buf.clear();
            }
            Err(ReadlineError::Interrupted) => buf.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_statements() {
        let s = statements("SELECT ';' AS a; -- c;omment\nSELECT 2;\n\n");
        assert_eq!(s, vec!["SELECT ';' AS a", "SELECT 2"]);
    }
}
