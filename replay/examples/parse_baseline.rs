//! The replay's speed baseline as a whole process: read a JSON-lines log and parse each line
//! with `serde_json` into `serde::de::IgnoredAny`, the least any JSON-lines tool must do. Prints
//! the number of lines. The README's performance section times `hpp-replay` against it:
//!
//! ```text
//! cargo build --release -p hpp-replay --examples
//! target/release/examples/parse_baseline LOG
//! ```

use std::io::{self, BufRead, BufReader};
use std::{env, fs::File, process::ExitCode};

use serde::de::IgnoredAny;

fn main() -> ExitCode {
    let Some(path) = env::args_os().nth(1) else {
        eprintln!("usage: parse_baseline LOG");
        return ExitCode::from(2);
    };
    match count(&path) {
        Ok(lines) => {
            println!("{lines} lines");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parse_baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses every non-empty line of the file; the number parsed.
fn count(path: &std::ffi::OsStr) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut line = Vec::new();
    let mut lines = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(lines);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        serde_json::from_slice::<IgnoredAny>(text).map_err(io::Error::other)?;
        lines += 1;
    }
}
