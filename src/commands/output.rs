//! Printing for operator commands: a table for people, `--json` (an array of objects with the
//! API's field names) for scripts.

use serde::Serialize;
use serde_json::Value;

/// Print `rows` as a JSON array, or as a table of `columns`.
pub fn print_rows<T: Serialize>(rows: &[T], columns: &[&str], json: bool) -> anyhow::Result<()> {
    let values: Vec<Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&values)?);
        return Ok(());
    }
    let cells: Vec<Vec<String>> = values
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<String>| {
        items
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in cells {
        println!("{}", line(row));
    }
    Ok(())
}

/// Print one object as pretty JSON (it is already readable).
pub fn print_one<T: Serialize>(row: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(row)?);
    Ok(())
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
