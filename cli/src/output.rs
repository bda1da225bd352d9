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
