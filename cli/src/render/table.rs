//! Aligned columns for the report's tables.

use std::fmt::Write as _;

use super::Style;

/// A table: columns padded to their widest cell (the last column is not padded). Cells may
/// carry colour: widths are measured without escape sequences. A row may carry notes: lines
/// printed under it, indented under its last cell (a call site's stack).
pub(super) struct Table {
    rows: Vec<Vec<String>>,
    notes: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    pub(super) fn new(right: &[bool]) -> Table {
        Table {
            rows: Vec::new(),
            notes: Vec::new(),
            right: right.to_vec(),
        }
    }

    /// The column names, dimmed.
    pub(super) fn header(&mut self, style: Style, names: &[&str]) {
        self.row(names.iter().map(|h| style.dim(h)).collect());
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.row_with_notes(cells, Vec::new());
    }

    pub(super) fn row_with_notes(&mut self, cells: Vec<String>, notes: Vec<String>) {
        self.rows.push(cells);
        self.notes.push(notes);
    }

    pub(super) fn write(&self, out: &mut String, indent: &str) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| visible_len(s))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (row, notes) in self.rows.iter().zip(&self.notes) {
            let mut line = String::from(indent);
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c].saturating_sub(visible_len(cell));
                let last = c + 1 == row.len();
                if self.right.get(c).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    line.push_str("  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            let last_column: usize = widths
                .iter()
                .take(row.len().saturating_sub(1))
                .map(|w| w + 2)
                .sum();
            for note in notes {
                let pad = " ".repeat(indent.len() + last_column + 2);
                let _ = writeln!(out, "{pad}{note}");
            }
        }
    }
}

/// Characters shown, escape sequences excluded.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_alignment_ignores_colour() {
        let style = Style { color: true };
        let mut t = Table::new(&[false, true]);
        t.row(vec![style.bad("a"), "1".into()]);
        t.row(vec!["bbb".into(), "100".into()]);
        let mut out = String::new();
        t.write(&mut out, "");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(visible_len(lines[0]), visible_len(lines[1]));
    }

    #[test]
    fn table_notes_go_under_the_last_cell() {
        let mut t = Table::new(&[false, true, false]);
        t.row(vec!["PID".into(), "N".into(), "AT".into()]);
        t.row_with_notes(
            vec!["12345".into(), "1".into(), "leaf (a.c:3)".into()],
            vec![
                "called from mid (a.c:9)".into(),
                "called from main (a.c:14)".into(),
            ],
        );
        t.row(vec!["7".into(), "100".into(), "main (a.c:20)".into()]);
        let mut out = String::new();
        t.write(&mut out, "  ");
        assert_eq!(
            out,
            "  PID      N  AT\n\
             \x20 12345    1  leaf (a.c:3)\n\
             \x20               called from mid (a.c:9)\n\
             \x20               called from main (a.c:14)\n\
             \x20 7      100  main (a.c:20)\n"
        );
    }
}
