//! `sentiflow sql`: ad-hoc SQL over a data root, like `datafusion-cli`.

use std::io::Write;

use anyhow::{Context, Result};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SQLOptions;
use futures::StreamExt;
use sentiflow_jobs::JobContext;
use sentiflow_jobs::io::store::{Location, list_files};
use sentiflow_jobs::schema::Table;
use sentiflow_jobs::sql::split_statements;
use sentiflow_jobs::tables::{register_parquet_table, register_raw_table};

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
    /// Allow statements that write (COPY, INSERT). Without it `sql` only reads,
    /// so a query cannot add files to the tables it reads or write elsewhere.
    #[arg(long)]
    allow_write: bool,
    /// The scorer behind sentiment(), sentiment_label(), sentiment_probs(), score_sentiment().
    #[command(flatten)]
    pub scorer: super::scorer::ScorerArgs,
    #[command(flatten)]
    pub cluster: super::cluster::ClusterArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OutFormat {
    Table,
    Csv,
    Json,
}

/// Registers every table found under the root; returns (name, files) pairs.
async fn register_all(jc: &JobContext, root: &Location) -> Result<Vec<(String, usize)>> {
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
                let raw = register_raw_table(jc, t.sql_name(), &loc).await?;
                if raw.not_on_cluster {
                    eprintln!(
                        "note: {} is not available with --cluster: its NDJSON/CSV files are validated in this process, \
                         and a cluster reads only files (score them, or query it without --cluster)",
                        t.sql_name()
                    );
                    continue;
                }
                if let Some(r) = &raw.first_reject {
                    let name = format!("{}_rejected", t.sql_name());
                    eprintln!(
                        "note: {} leaves out {} records that fail validation (first: {}{}: {}); they are in table {name}",
                        t.sql_name(),
                        raw.rejected,
                        r.file,
                        r.line.map(|l| format!(":{l}")).unwrap_or_default(),
                        r.reason
                    );
                    found.push((name, 0));
                }
            }
            _ => register_parquet_table(jc, t.sql_name(), t, &loc)?,
        }
        found.push((t.sql_name().to_string(), n));
    }
    Ok(found)
}

/// Tweet text can hold terminal control sequences (ESC, BEL, CR…); the
/// table view shows them escaped (`\u{1b}`) so they cannot drive the terminal.
fn escape_controls(batch: &RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let escape = |s: &str| super::printable(s, false);
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            let c = cast(c, &DataType::Utf8)?;
            let strings: StringArray = c.as_string::<i32>().iter().map(|v| v.map(escape)).collect();
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            cols.push(std::sync::Arc::new(strings));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    // the row count too: a batch of no columns has rows but no column to say how many
    let opts = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(std::sync::Arc::new(Schema::new(fields)), cols, &opts)?)
}

/// Rows of one table in `--format table`: a longer result prints as several
/// tables of this many rows, so memory holds one of them, not the result.
const TABLE_ROWS: usize = 5_000;

/// Writes a result as it arrives: CSV and JSON batch by batch, tables in
/// pieces of [`TABLE_ROWS`] rows. A closed pipe (`… | head`) ends the process
/// at its first write (see [`crate::Stdout`]), so nothing runs on unread.
async fn print_stream(mut stream: SendableRecordBatchStream, format: OutFormat, out: &mut impl Write) -> Result<()> {
    let schema = stream.schema();
    if schema.fields().is_empty() {
        // a statement with no result (CREATE EXTERNAL TABLE, CREATE VIEW, SET): nothing to print
        while let Some(batch) = stream.next().await {
            batch?;
        }
        return Ok(());
    }
    match format {
        OutFormat::Table => {
            let mut piece: Vec<RecordBatch> = Vec::new();
            let (mut rows, mut printed) = (0, false);
            while let Some(batch) = stream.next().await {
                let mut batch = batch?;
                while rows + batch.num_rows() >= TABLE_ROWS {
                    let take = TABLE_ROWS - rows;
                    piece.push(batch.slice(0, take));
                    batch = batch.slice(take, batch.num_rows() - take);
                    print_table(&mut piece, out)?;
                    (rows, printed) = (0, true);
                }
                if batch.num_rows() > 0 {
                    rows += batch.num_rows();
                    piece.push(batch);
                }
            }
            // the rest; an empty result still prints its (empty) table once
            if rows > 0 || !printed {
                piece.push(RecordBatch::new_empty(schema));
                print_table(&mut piece, out)?;
            }
        }
        OutFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            // an empty batch first: the header is printed even when no row comes
            w.write(&RecordBatch::new_empty(schema))?;
            while let Some(batch) = stream.next().await {
                w.write(&batch?)?;
            }
        }
        OutFormat::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            while let Some(batch) = stream.next().await {
                w.write(&batch?)?;
            }
            w.finish()?;
            drop(w);
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Prints the batches as one table and empties them.
fn print_table(batches: &mut Vec<RecordBatch>, out: &mut impl Write) -> Result<()> {
    let safe = batches.drain(..).map(|b| escape_controls(&b)).collect::<Result<Vec<_>>>()?;
    writeln!(out, "{}", pretty_format_batches(&safe)?)?;
    Ok(())
}

#[cfg(test)]
fn print(batches: &[RecordBatch], format: OutFormat, out: &mut impl Write) -> Result<()> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        schema,
        futures::stream::iter(Vec::from(batches).into_iter().map(Ok)),
    );
    futures::executor::block_on(print_stream(Box::pin(stream), format, out))
}

/// How `sql` runs statements: what the user allowed, and what it found.
struct Session<'a> {
    jc: &'a JobContext,
    root: &'a Location,
    tables: Vec<(String, usize)>,
    allow_write: bool,
    format: OutFormat,
}

impl Session<'_> {
    async fn execute(&self, sql: &str) -> Result<()> {
        let opts = SQLOptions::new().with_allow_dml(self.allow_write);
        let planned = self.jc.ctx.sql_with_options(sql, opts).await;
        let df = match planned {
            Ok(df) => df,
            Err(e) if e.to_string().contains("DML not supported") => {
                anyhow::bail!(
                    "sql is read-only: {} writes files; run it with --allow-write if that is meant ({})",
                    short_sql(sql),
                    e.strip_backtrace()
                )
            }
            Err(e) if self.tables.is_empty() && e.to_string().contains("not found") => {
                anyhow::bail!(
                    "{}: no sentiflow tables were found under --data {} (the default is {}); run `sentiflow run` first or point --data at a data root",
                    e.strip_backtrace(),
                    self.root.display,
                    super::DEFAULT_OUT
                )
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("sql failed: {}", short_sql(sql)))),
        };
        // a Parquet error names no file: the scope finds the one that cannot be read
        let scope = sentiflow_jobs::io::diagnose::QueryScope::of(&df);
        let printed = match df.execute_stream().await {
            Ok(stream) => {
                let stdout = std::io::stdout();
                print_stream(stream, self.format, &mut crate::Stdout(stdout.lock())).await
            }
            Err(e) => Err(e.into()),
        };
        match printed {
            Ok(()) => Ok(()),
            Err(e) => match e.downcast::<datafusion::error::DataFusionError>() {
                Ok(e) => Err(anyhow::Error::new(scope.error(e).await)),
                Err(e) => Err(e),
            }
            .with_context(|| format!("query failed: {}", short_sql(sql))),
        }
    }
}

fn short_sql(sql: &str) -> String {
    let s: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 120 { format!("{}…", &s[..s.floor_char_boundary(120)]) } else { s }
}

pub async fn run(jc: &JobContext, args: SqlCli) -> Result<()> {
    let root = Location::parse(&args.data)?;
    let tables = register_all(jc, &root).await?;
    let session = Session { jc, root: &root, tables, allow_write: args.allow_write, format: args.format };
    let script = match (&args.command, &args.file) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?),
        (None, None) => None,
    };
    if let Some(script) = script {
        for stmt in split_statements(&script) {
            session.execute(&stmt).await?;
        }
        return Ok(());
    }
    repl(&session).await
}

async fn repl(session: &Session<'_>) -> Result<()> {
    use rustyline::error::ReadlineError;
    let tables = &session.tables;
    println!("sentiflow sql over {}", session.root.display);
    if tables.is_empty() {
        println!(
            "no tables found there (run `sentiflow run` first); any file can still be queried: SELECT * FROM 'path/file.parquet'"
        );
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
                    if let Err(e) = session.execute(&sql).await {
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
                for stmt in split_statements(&buf) {
                    if let Err(e) = session.execute(&stmt).await {
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

    #[test]
    fn control_characters_are_escaped_in_tables() {
        use datafusion::arrow::array::StringArray;
        let b = datafusion::arrow::array::RecordBatch::try_from_iter([(
            "t",
            std::sync::Arc::new(StringArray::from(vec!["a\u{1b}[2Jb\u{7}\rc"])) as _,
        )])
        .unwrap();
        let mut out = Vec::new();
        super::print(&[b], super::OutFormat::Table, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("a\\u{1b}[2Jb\\u{7}\\u{d}c"), "{s}");
        assert!(!s.contains('\u{1b}'));
    }

    #[test]
    fn a_result_without_columns_prints_nothing_in_every_format() {
        use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
        let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let opts = RecordBatchOptions::new().with_row_count(Some(1));
        let b = RecordBatch::try_new_with_options(schema, vec![], &opts).unwrap();
        for format in [super::OutFormat::Table, super::OutFormat::Csv, super::OutFormat::Json] {
            let mut out = Vec::new();
            super::print(std::slice::from_ref(&b), format, &mut out).unwrap();
            assert!(out.is_empty(), "{format:?}: {}", String::from_utf8_lossy(&out));
        }
        // and a table view of such a batch has its row count
        assert_eq!(super::escape_controls(&b).unwrap().num_rows(), 1);
    }
}
