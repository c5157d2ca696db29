//! The Markdown the benchmarks write.

use std::fmt::Write as _;

pub fn fmt_ratio(x: f64) -> String {
    format!("{x:.2}")
}

/// A table's header row and the row under it: numbers right-aligned, and the first column
/// left-aligned when it holds names (`first_left`).
pub fn table_header(md: &mut String, columns: &[&str], first_left: bool) -> std::fmt::Result {
    writeln!(md, "| {} |", columns.join(" | "))?;
    let mut align = vec!["---:"; columns.len()];
    if first_left {
        align[0] = "---";
    }
    writeln!(md, "|{}|", align.join("|"))
}
