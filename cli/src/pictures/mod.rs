//! `--html FILE` and `--trace-json FILE`: the report drawn over time. Both need every call,
//! which the text and JSON reports do not keep, so the logs are read again for them.

mod html;
mod labels;
mod trace_event;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::args::ViewOptions;
use crate::merge::Report;
use crate::symbols::Symbolizer;
use crate::timeline::Timeline;

/// Writes the files `view` asks for; `Err` names the file that could not be written.
pub fn write(report: &Report, view: &ViewOptions, files: &[PathBuf]) -> Result<(), String> {
    if view.html.is_none() && view.trace_json.is_none() {
        return Ok(());
    }
    let timeline = Timeline::read(files);
    let mut symbolizer = Symbolizer::new();
    if let Some(path) = &view.trace_json {
        to_file(path, |out| {
            trace_event::write(report, &timeline, &mut symbolizer, out)
        })?;
    }
    if let Some(path) = &view.html {
        to_file(path, |out| {
            html::write(report, &timeline, &mut symbolizer, out)
        })?;
    }
    Ok(())
}

fn to_file(path: &Path, body: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), String> {
    File::create(path)
        .and_then(|f| body(&mut BufWriter::new(f)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
