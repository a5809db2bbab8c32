//! Errors of the job crate: one enum, lowercase messages naming the object,
//! the cause kept as `source`.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid location {location:?}: {reason}")]
    Location { location: String, reason: String },

    #[error("object store for {location} could not be built")]
    StoreBuild {
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error("{op} {location} failed")]
    Store {
        op: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },

    #[error("no input files found at {location} (check the path; names starting with '_' or '.' are skipped)")]
    NoInput { location: String },

    #[error("sql {name} failed")]
    Sql {
        name: String,
        #[source]
        source: DataFusionError,
    },

    #[error("no sql file named {name:?} (known: {known})")]
    UnknownSql { name: String, known: String },

    #[error("query failed")]
    Query {
        #[source]
        source: DataFusionError,
    },

    /// A query failed reading a file of a table (the file found by io::diagnose).
    #[error(
        "the query failed reading {file}: {reason}; move the file out of the table (or delete it) and \
         re-run the job that wrote it"
    )]
    UnreadableFile {
        file: String,
        reason: String,
        #[source]
        source: DataFusionError,
    },

    #[error("parquet file {location} could not be written")]
    ParquetWrite {
        location: String,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },

    #[error("arrow data for {what} is invalid")]
    Arrow {
        what: String,
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },

    #[error("scorer could not be loaded")]
    Scorer(#[from] sentiflow_udfs::Error),

    #[error("kinesis {op} on stream {stream} failed: {reason}")]
    Kinesis { op: &'static str, stream: String, reason: String },

    #[error("firehose {op} on delivery stream {stream} failed: {reason}")]
    Firehose { op: &'static str, stream: String, reason: String },

    #[error("checkpoint {location} is unusable: {reason}")]
    Checkpoint { location: String, reason: String },

    #[error("llm at {base_url} (model {model}) failed: {reason}")]
    Llm { base_url: String, model: String, reason: String },

    #[error("secret {secret} could not be read: {reason}")]
    Secret { secret: String, reason: String },

    /// A command-line option (or the job argument it maps to) has a value the job cannot use.
    #[error("{option}: {reason}")]
    Option { option: &'static str, reason: String },

    /// A time template in a location or `--from/--to` (see `timeexpr`).
    #[error("time template {template:?}: {reason}")]
    TimeTemplate { template: String, reason: String },

    /// A file the user gave that is not what the job reads (eval data, alert rules).
    #[error("{what} {path}: {reason}")]
    InputFile { what: &'static str, path: String, reason: String },

    /// An output needed before this job is missing (`report` without windows).
    #[error("{reason}")]
    Missing { reason: String },

    #[error("output lock {lock} was lost: {reason}")]
    Lock { lock: String, reason: String },

    /// A broken promise inside sentiflow (a query without an expected column):
    /// a bug to report, not bad input.
    #[error(
        "{query} failed on the cluster {attempts} times: {reason}; nothing of it was written: \
         check the executors (their logs) and run the job again (outputs are replaced, not duplicated)"
    )]
    Cluster { query: String, attempts: u32, reason: String },
    #[error("internal error: {0} (a bug in sentiflow; please report it)")]
    Internal(String),

    #[error("io on {path} failed")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn query(source: DataFusionError) -> Self {
        Error::Query { source }
    }

    pub(crate) fn arrow(what: impl Into<String>, source: datafusion::arrow::error::ArrowError) -> Self {
        Error::Arrow { what: what.into(), source }
    }
}

/// An error and its sources on one line (`a: b: c`), for messages stored in data.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
