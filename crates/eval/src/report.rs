//! The Markdown report of a run: a title, tables and linked plots, written next to them.
use crate::error::{EvalError, Result};
use std::fmt::Write as _;
use std::path::Path;

/// A Markdown document built section by section.
#[derive(Debug, Default, Clone)]
pub struct Report {
    text: String,
}

impl Report {
    pub fn new(title: &str) -> Self {
        Self { text: format!("# {title}\n\n") }
    }

    pub fn heading(&mut self, title: &str) -> &mut Self {
        let _ = write!(self.text, "## {title}\n\n");
        self
    }

    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        let _ = write!(self.text, "{text}\n\n");
        self
    }

    /// A table; cells are escaped for `|`.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> &mut Self {
        let esc = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(self.text, "| {} |", header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(self.text, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(self.text, "| {} |", row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | "));
        }
        self.text.push('\n');
        self
    }

    /// An image, linked by a path relative to the report.
    pub fn image(&mut self, alt: &str, relative_path: &str) -> &mut Self {
        let _ = write!(self.text, "![{alt}]({relative_path})\n\n");
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Writes the report (through a temporary file and a rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, &self.text).map_err(|e| EvalError::Io { path: tmp.clone(), source: e })?;
        std::fs::rename(&tmp, path).map_err(|e| EvalError::Io { path: path.to_path_buf(), source: e })
    }
}

/// Formats a fraction as a percentage with one decimal.
pub fn percent(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_markdown() {
        let mut r = Report::new("Run");
        r.table(&["a", "b"], &[vec!["1".into(), "x|y".into()]]).image("plot", "plot.png");
        let s = r.as_str();
        assert!(s.starts_with("# Run\n"));
        assert!(s.contains("| a | b |\n|---|---|\n| 1 | x\\|y |"));
        assert!(s.contains("![plot](plot.png)"));
        assert_eq!(percent(0.8812), "88.1 %");
    }
}
