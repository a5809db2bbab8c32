//! Progress bars for long jobs (indicatif), drawn only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress(ProgressBar);

impl Progress {
    fn new(name: &str, total: u64, unit: &str) -> Self {
        let quiet = !std::io::stderr().is_terminal() || std::env::var_os("SENTIFLOW_NO_PROGRESS").is_some();
        let bar = if quiet {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        } else {
            ProgressBar::new(total)
        };
        let template =
            format!("{{prefix:>10}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_string());
        Progress(bar)
    }

    pub fn rows(name: &str, total: u64) -> Self {
        Self::new(name, total, "rows")
    }

    pub fn files(name: &str, total: u64) -> Self {
        Self::new(name, total, "files")
    }

    pub fn set(&self, pos: u64) {
        self.0.set_position(pos);
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    pub fn finish(&self, pos: u64) {
        self.0.set_position(pos);
        self.0.finish_and_clear();
    }
}
