//! Tables as kubectl prints them: no borders, columns left-aligned and separated by spaces.

use comfy_table::{Row, Table, presets::NOTHING};

/// A borderless table with `header`.
pub(crate) fn table<T: Into<Row>>(header: T) -> Table {
    let mut table = Table::new();
    table.load_style(NOTHING);
    table.set_header(header);
    table
}

/// The table as text, each line without leading or trailing blanks.
pub(crate) fn render(table: &mut Table) -> String {
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
