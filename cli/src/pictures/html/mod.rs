//! `--html FILE`: the report as one self-contained page (no network: styles, script and data
//! are inside it). The timeline is SVG drawn here (see `lanes`); the page's small script only
//! shows the call under the pointer or clicked, from the calls embedded as JSON, and links
//! the tables to the timeline. A charting library would add a build-time download and a
//! licence to track, for pictures that are a few paths and marks per lane.

mod downsample;
mod lanes;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::labels::stack_texts;
use crate::merge::Report;
use crate::render::{call_text, duration, ongoing_text, verdict_text};
use crate::symbols::{Symbol, Symbolizer};
use crate::timeline::Timeline;
use crate::timeline::marks::{FindingMark, LeakMark, finding_marks, leak_marks};
use downsample::{Scale, Shown, shown_events};
use lanes::{COLUMNS, Drawing, offset_text};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// Text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `512 B`, `64 KiB`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn write(
    report: &Report,
    t: &Timeline,
    symbolizer: &mut Symbolizer,
    out: &mut dyn Write,
) -> io::Result<()> {
    let leaks = leak_marks(report, t);
    let findings = finding_marks(report, t, symbolizer);
    let wanted: BTreeSet<usize> = leaks
        .iter()
        .filter_map(|l| l.event)
        .chain(findings.iter().filter_map(|f| f.event))
        .collect();
    let scale = Scale {
        first: t.first_ts,
        last: t.end_ts.max(t.first_ts + 1),
        columns: COLUMNS,
    };
    let shown = shown_events(t, scale, &wanted);
    // Ids in lane order, so that the page lists a process's calls together.
    let mut order: Vec<&Shown> = Vec::new();
    for p in &report.processes {
        order.extend(shown.get(&p.pid).into_iter().flatten());
    }
    let event_ids: HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(id, s)| (s.event, id))
        .collect();
    let events: Vec<Value> = order.iter().map(|s| event_json(t, s, symbolizer)).collect();

    let drawing = Drawing {
        report,
        t,
        scale,
        shown: &shown,
        event_ids: &event_ids,
        leaks: &leaks,
        findings: &findings,
    };
    let data = json!({
        "events": events,
        "leaks": leaks.iter().map(|l| leak_json(l, &event_ids)).collect::<Vec<_>>(),
        "findings": findings_json(report, &findings, &event_ids),
    });
    // `<` escaped keeps `</script>` in any logged string from ending the data block.
    let data = data.to_string().replace('<', "\\u003c");

    let ongoing = ongoing_text(report);
    let mut page = head(report, t, !ongoing.is_empty());
    let _ = write!(
        page,
        "<section id=\"timeline-section\"><h2>Timeline</h2>\
         <p class=\"legend\"><span class=\"key mapped\"></span>bytes mapped \
         <span class=\"key attached\"></span>bytes attached \
         <span class=\"key sysv\"></span>live SysV objects it created \
         <span class=\"key shared\"></span>live shared file mappings \
         <span class=\"key create\"></span>created <span class=\"key remove\"></span>removed \
         <span class=\"key leak\"></span>leak <span class=\"key finding\"></span>finding. \
         Each pixel column shows the highest value in it and one of its calls.</p>\
         <div id=\"detail\" aria-live=\"polite\"><p>Point at or click a call, a leak or a \
         finding to see it.</p></div><div class=\"scroll\">{}</div></section>",
        drawing.svg()
    );
    leaks_section(&mut page, &leaks, &event_ids);
    ongoing_section(&mut page, &ongoing);
    findings_section(&mut page, report);
    calls_section(&mut page, report);
    warnings_section(&mut page, report);
    let _ = writeln!(
        page,
        "<script type=\"application/json\" id=\"shmtrace-data\">{data}</script>\
         <script>{SCRIPT}</script></body></html>"
    );
    out.write_all(page.as_bytes())?;
    out.flush()
}

/// The document's head, the title and the verdict; `ongoing`: the page has that section.
fn head(report: &Report, t: &Timeline, ongoing: bool) -> String {
    let title = match &report.run {
        Some(run) => format!("shmtrace: {}", run.program.join(" ")),
        None => "shmtrace report".to_string(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1><p id=\"verdict\" class=\"{}\">{}</p>{}</header>\
         <nav><a href=\"#timeline-section\">Timeline</a> <a href=\"#leaks\">Leaks</a> {}\
         <a href=\"#findings\">Findings</a> <a href=\"#calls\">Calls</a></nav>",
        esc(&title),
        esc(&title),
        if report.verdict.fails() {
            "fails"
        } else {
            "passes"
        },
        esc(&verdict_text(&report.verdict)),
        summary_line(report, t),
        if ongoing {
            "<a href=\"#ongoing\">Still going on</a> "
        } else {
            ""
        },
    )
}

fn summary_line(report: &Report, t: &Timeline) -> String {
    let span = (t.end_ts - t.first_ts).max(0);
    let n = report.processes.len();
    format!(
        "<p class=\"summary\">{n} process{}, {} calls over {}</p>",
        if n == 1 { "" } else { "es" },
        t.events.len(),
        offset_text(span).trim_start_matches('+')
    )
}

fn event_json(t: &Timeline, s: &Shown, symbolizer: &mut Symbolizer) -> Value {
    let e = &t.events[s.event];
    let args: Map<String, Value> = serde_json::from_str(&e.args).unwrap_or_default();
    let modules = t.modules_at(e.pid, e.ts);
    let ret: Option<Value> = e.ret.as_deref().and_then(|r| serde_json::from_str(r).ok());
    json!({
        "fn": e.func.as_ref(),
        "call": call_text(&e.func, &args),
        "args": args,
        "ret": ret,
        "returned": e.returned(),
        "errno": e.errno.as_deref(),
        "dur": e.returned().then(|| duration(e.dur_ns)),
        "pid": e.pid,
        "tid": e.tid,
        "at": offset_text((e.ts - t.first_ts).max(0)),
        "site": e.caller.map(|a| symbolizer.symbolize(a, modules).text()),
        "stack": stack_texts(&symbolizer.symbolize_all(&e.stack, modules)),
        "n": s.stands_for,
    })
}

fn leak_json(l: &LeakMark, ids: &HashMap<usize, usize>) -> Value {
    json!({
        "pid": l.pid,
        "what": l.what,
        "site": l.site.as_ref().map(Symbol::text),
        "stack": stack_texts(&l.stack),
        "ev": l.event.and_then(|e| ids.get(&e)),
    })
}

fn findings_json(report: &Report, marks: &[FindingMark], ids: &HashMap<usize, usize>) -> Value {
    report
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let events: Vec<usize> = marks
                .iter()
                .filter(|m| m.finding == i)
                .filter_map(|m| m.event.and_then(|e| ids.get(&e)).copied())
                .collect();
            json!({
                "code": f.code, "name": f.name, "severity": f.severity, "fn": f.func,
                "site": f.site.as_ref().map(Symbol::text), "message": f.message,
                "count": f.count, "pids": f.pids, "events": events,
            })
        })
        .collect()
}

/// `<ol class="stack">` of the frames above a site, or nothing.
fn stack_html(stack: &[Symbol]) -> String {
    if stack.is_empty() {
        return String::new();
    }
    let mut s = String::from("<ol class=\"stack\">");
    for frame in stack {
        let _ = write!(s, "<li>called from {}</li>", esc(&frame.text()));
    }
    s.push_str("</ol>");
    s
}

fn call_link(event: Option<usize>, ids: &HashMap<usize, usize>) -> String {
    match event.and_then(|e| ids.get(&e)) {
        Some(id) => format!("<a href=\"#timeline\" data-ev=\"{id}\">show call</a>"),
        None => String::new(),
    }
}

fn leaks_section(page: &mut String, leaks: &[LeakMark], ids: &HashMap<usize, usize>) {
    page.push_str("<section id=\"leaks\"><h2>Leaks</h2>");
    if leaks.is_empty() {
        page.push_str("<p>Nothing left behind.</p></section>");
        return;
    }
    page.push_str(
        "<table><thead><tr><th>process</th><th>left behind</th><th>site</th><th></th></tr>\
         </thead><tbody>",
    );
    for (i, l) in leaks.iter().enumerate() {
        let site = l.site.as_ref().map_or("?".to_string(), Symbol::text);
        let _ = write!(
            page,
            "<tr id=\"leak-{i}\" class=\"leak-row\" data-leak=\"{i}\"><td><a href=\"#lane-{}\">{}\
             </a></td><td>{}</td><td><span class=\"site\">{}</span>{}</td><td>{}</td></tr>",
            l.pid,
            l.pid,
            esc(&l.what),
            esc(&site),
            stack_html(&l.stack),
            call_link(l.event, ids)
        );
    }
    page.push_str("</tbody></table></section>");
}

/// Objects in use, what no log recorded, who waits for whom and deadlocks, in the text
/// report's words.
fn ongoing_section(page: &mut String, text: &str) {
    if !text.is_empty() {
        let _ = write!(
            page,
            "<section id=\"ongoing\"><h2>Still going on</h2><pre>{}</pre></section>",
            esc(text)
        );
    }
}

fn findings_section(page: &mut String, report: &Report) {
    page.push_str("<section id=\"findings\"><h2>Findings</h2>");
    if report.findings.is_empty() {
        page.push_str("<p>No finding.</p></section>");
        return;
    }
    page.push_str(
        "<table><thead><tr><th>code</th><th>severity</th><th>function</th><th>site</th>\
         <th>times</th><th>processes</th><th>explanation</th></tr></thead><tbody>",
    );
    for (i, f) in report.findings.iter().enumerate() {
        let pids: Vec<String> = f
            .pids
            .iter()
            .map(|p| format!("<a href=\"#lane-{p}\">{p}</a>"))
            .collect();
        let _ = write!(
            page,
            "<tr id=\"finding-{i}\" class=\"finding-row sev-{}\" data-finding=\"{i}\"><td>\
             <a href=\"#timeline\" data-finding=\"{i}\">{}</a> {}</td><td>{}</td><td>{}</td>\
             <td class=\"site\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.severity),
            esc(&f.code),
            esc(&f.name),
            esc(&f.severity),
            esc(&f.func),
            esc(&f.site.as_ref().map_or("?".to_string(), Symbol::text)),
            f.count,
            pids.join(" "),
            esc(&f.message)
        );
    }
    page.push_str("</tbody></table></section>");
}

fn calls_section(page: &mut String, report: &Report) {
    page.push_str(
        "<section id=\"calls\"><h2>Calls</h2><p>Click a function to mark its calls on the \
         timeline.</p><table><thead><tr><th>function</th><th>calls</th><th>failed</th>\
         <th>total time</th><th>average</th><th>max</th></tr></thead><tbody>",
    );
    for c in &report.calls {
        let _ = write!(
            page,
            "<tr data-fn-row=\"{}\"><td><a href=\"#timeline\">{}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.func),
            esc(&c.func),
            c.calls,
            c.failed,
            duration(c.total_ns),
            duration(c.total_ns / c.calls.max(1)),
            duration(c.max_ns)
        );
    }
    page.push_str("</tbody></table></section>");
}

fn warnings_section(page: &mut String, report: &Report) {
    if report.warnings.is_empty() {
        return;
    }
    page.push_str("<section id=\"warnings\"><h2>Warnings</h2><ul>");
    for w in &report.warnings {
        let _ = write!(page, "<li>{}</li>", esc(w));
    }
    page.push_str("</ul></section>");
}
