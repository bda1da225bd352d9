//! Writing results to standard output. A closed pipe (`nullspace plan … | head`) ends the output
//! quietly instead of panicking as `print!` would.

use std::io::{ErrorKind, Write};

/// Writes `text` to standard output.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `value` as pretty JSON and a newline.
pub fn emit_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(emit(&text)?)
}

/// Writes one page of a list: as JSON (`items` and `next_cursor`), or one `line` per item
/// followed by how to ask for the next page.
pub fn emit_page<T: serde::Serialize>(
    page: &nullspace_engine::store::Page<T>,
    json: bool,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return emit_json(&serde_json::json!({ "items": page.items, "next_cursor": page.next_cursor }));
    }
    let mut text: String = page.items.iter().map(line).collect();
    if let Some(c) = &page.next_cursor {
        text.push_str(&format!("next page: --cursor {c}\n"));
    }
    Ok(emit(&text)?)
}
