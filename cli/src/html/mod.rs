//! `--html FILE`: one self-contained page.

use std::io::{self, Write};

use crate::merge::Report;
use crate::symbols::Symbolizer;
use crate::timeline::Timeline;

pub fn write(
    _report: &Report,
    _t: &Timeline,
    _symbolizer: &mut Symbolizer,
    out: &mut dyn Write,
) -> io::Result<()> {
    out.write_all(b"<!doctype html>\n")
}
