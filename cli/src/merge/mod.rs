//! The merged report of a process tree: every log read, processes and their program images
//! reconstructed, SysV objects followed across processes (created in one, removed in another),
//! exit reports gathered, blocked calls found, call statistics summed, and every call site
//! symbolized in the image that made the call.

mod collect;
mod exit_holding;
mod findings;
mod hangs;
mod holdings;
mod live;
mod model;
mod names;
pub mod stacks;
mod sysv;
#[cfg(test)]
mod tests;
mod tree;
mod waits;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use shmtrace_core::allocators::{self, Allocators};
use shmtrace_core::trace::event::Func;

use crate::args::ViewOptions;
use crate::kernel::{self, Kernel, LiveCheck, Start};
use crate::logs::{self, Call, Inputs, Micros, Module, Pos};
use crate::runinfo::RunInfo;
use crate::symbols::Symbolizer;
use collect::Collector;
use findings::Rules;
pub use hangs::{DEADLOCK, Deadlock, Hangs, HolderState, HolderView, Party, WaitView};
pub use holdings::SemOp;
pub use model::*;
use sysv::sysv_leaks;
use tree::Tree;

/// Malformed lines listed per file (the rest are counted).
const MALFORMED_SHOWN: usize = 3;

/// Where the merge gets its input and what it knows about the run.
pub struct Sources<'a> {
    pub inputs: &'a Inputs,
    pub run: Option<RunInfo>,
    pub run_dir: Option<PathBuf>,
}

/// Reads every log and builds the report. `Err` only when no log can be read at all.
pub fn build(sources: Sources<'_>, view: &ViewOptions) -> Result<Report, String> {
    let mut report = Report {
        run: sources.run,
        run_dir: sources.run_dir,
        files: sources.inputs.files.clone(),
        filtered_pids: view.pids.iter().copied().collect(),
        filtered_calls: view.calls.as_ref().map(|c| c.iter().cloned().collect()),
        ..Report::default()
    };
    let live = LiveCheck::new(&sources.inputs.files, report.run_dir.as_deref());
    let running_before = running_before_read(&sources.inputs.files, &live);
    let collector = read_all(&sources.inputs.files, &mut report.warnings)?;
    let tree = Tree::build(&collector, report.run.as_ref());
    let mut symbolizer = Symbolizer::new();
    report.first_ts = collector
        .seen
        .values()
        .map(|s| s.first_ts)
        .chain(report.run.as_ref().and_then(|r| r.started))
        .min();

    report.processes = processes(&collector, &tree, &report, |pid| {
        running_before
            .get(&pid)
            .copied()
            .unwrap_or_else(|| live.running(pid))
    });
    report.verdict.unreported = report
        .processes
        .iter()
        .filter(|p| p.ending != Ending::Exited)
        .count() as u64;

    report.verdict.still_running = report
        .processes
        .iter()
        .filter(|p| p.ending == Ending::StillRunning)
        .count() as u64;
    let kernel = Kernel::read();
    let (leaks, summary) = sysv_leaks(&collector, &tree, &kernel, &mut symbolizer);
    report.sysv = summary;
    let running = live::Running::read(&report.processes);
    if let Some(start) = report.run_dir.as_deref().and_then(Start::read) {
        let mut pids: BTreeSet<i32> = tree.nodes.keys().copied().collect();
        pids.extend(&start.reaped);
        pids.extend(report.run.as_ref().and_then(|r| r.root_pid));
        let ended = report.run.as_ref().and_then(|r| r.ended);
        report.not_seen = live::unseen(&collector, &kernel, &start, &pids, &running, ended, &leaks);
        report.verdict.not_seen = report.not_seen.len() as u64;
    }
    let (leaks, in_use) = live::split_in_use(&collector, &running, leaks);
    report.verdict.in_use = in_use.len() as u64;
    report.in_use = in_use
        .into_iter()
        .filter(|l| view.shows_pid(l.pid))
        .collect();
    for leak in &leaks {
        match leak.kind {
            Kind::Segment => report.verdict.segments += 1,
            Kind::SemaphoreSet => report.verdict.semaphore_sets += 1,
            Kind::MessageQueue => report.verdict.message_queues += 1,
        }
    }
    report.leaks = leaks
        .into_iter()
        .filter(|l| view.shows_pid(l.pid))
        .collect();
    let names = names::name_leaks(&collector, &tree, &mut symbolizer, kernel::dev_shm_file);
    report.verdict.names = names.len() as u64;
    report.names = names
        .into_iter()
        .filter(|l| view.shows_pid(l.pid))
        .collect();

    let allocators = allocators_from_env(&mut report.warnings);
    exit_reports(
        &collector,
        &tree,
        view,
        &allocators,
        &mut symbolizer,
        &mut report,
    );
    reachable_at_exit(&collector, &tree, view, &mut symbolizer, &mut report);
    report.blocked = blocked_calls(&collector, &tree, view, &mut symbolizer, &report.processes);
    let rules = Rules::from_env(&mut report.warnings);
    let mut reread = || read_all(&sources.inputs.files, &mut Vec::new()).ok();
    report.hangs = hangs::hangs(
        &collector,
        &tree,
        &report.processes,
        &mut symbolizer,
        &mut reread,
    );
    let deadlocks_suppressed = report
        .hangs
        .suppress(|site| rules.suppresses(hangs::DEADLOCK.0, site));
    report.verdict.deadlocks = report.hangs.deadlocks.len() as u64;
    let exit_holding = exit_holding::findings(&collector.holdings.settle(), |pid| {
        let exited = collector.reports.contains_key(&pid);
        exited.then(|| collector.seen.get(&pid).map_or(Micros::MAX, |s| s.last_ts))
    });
    (report.findings, report.verdict.findings) = findings::merge(
        &collector,
        &exit_holding,
        &tree,
        view,
        &mut symbolizer,
        &rules,
    );
    report.verdict.findings.suppressed += deadlocks_suppressed;
    report.calls = call_stats(&collector, view);

    for pid in &view.pids {
        if !tree.nodes.contains_key(pid) {
            report
                .warnings
                .push(format!("--pid {pid}: no such process in these logs"));
        }
    }
    if collector.starts.is_empty() && !collector.seen.is_empty() {
        report.warnings.push(
            "no start records (a shim older than the shmtrace command): call sites are not \
             symbolized and parents are unknown"
                .into(),
        );
    }
    Ok(report)
}

/// Every file into one collector; unreadable files and malformed lines become warnings.
fn read_all(files: &[PathBuf], warnings: &mut Vec<String>) -> Result<Collector, String> {
    let mut collector = Collector::default();
    let mut readable = 0usize;
    for (i, path) in files.iter().enumerate() {
        match logs::read_file(path, i, &mut |pos, record| collector.add(pos, record)) {
            Ok(summary) => {
                readable += 1;
                let n = summary.malformed.len();
                for (line, reason) in summary.malformed.iter().take(MALFORMED_SHOWN) {
                    warnings.push(format!("{}:{line}: skipped: {reason}", path.display()));
                }
                if n > MALFORMED_SHOWN {
                    warnings.push(format!(
                        "{}: {} more malformed lines skipped",
                        path.display(),
                        n - MALFORMED_SHOWN
                    ));
                }
            }
            Err(e) => warnings.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if readable == 0 && !files.is_empty() {
        return Err(warnings.join("\n"));
    }
    Ok(collector)
}

/// Whether the process of each log named by its pid (`PID.bin`, `PID.jsonl`) runs, asked
/// before the logs are read. A process that ends while they are read then counts as running
/// (its log may stop short of its end) and never as one that ended with the calls its log,
/// read earlier, still showed pending: a consumer that got its item, exited, and looked as if
/// it had died waiting.
fn running_before_read(files: &[PathBuf], live: &LiveCheck) -> BTreeMap<i32, bool> {
    files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str()?.parse::<i32>().ok())
        .map(|pid| (pid, live.running(pid)))
        .collect()
}

/// Every process, in tree order, with how it ended (`running`: whether a process without an
/// exit report still runs).
fn processes(
    collector: &Collector,
    tree: &Tree,
    report: &Report,
    running: impl Fn(i32) -> bool,
) -> Vec<Process> {
    let root = report.run.as_ref().and_then(|r| r.root_pid);
    tree.order
        .iter()
        .map(|&pid| {
            let node = &tree.nodes[&pid];
            let status = if root == Some(pid) {
                report.run.as_ref().and_then(|r| r.status)
            } else {
                None
            };
            let ending = if collector.reports.contains_key(&pid) {
                Ending::Exited
            } else if status.is_none() && running(pid) {
                Ending::StillRunning
            } else {
                Ending::NotNormally
            };
            Process {
                pid,
                ppid: node.ppid,
                parent_source: node.parent_source,
                exes: node.images.iter().map(|i| i.exe.clone()).collect(),
                forked: node.images.first().is_some_and(|i| i.pos.is_none()),
                ending,
                status,
                depth: node.depth,
                records: collector.seen.get(&pid).map_or(0, |s| s.records),
                calls: collector.calls_of(pid),
            }
        })
        .collect()
}

/// `SHMTRACE_ALLOCATORS` as the shim reads it (the command passes its environment on to the
/// program, so both classify alike); a malformed value is a warning and the built-in list.
fn allocators_from_env(warnings: &mut Vec<String>) -> Allocators {
    let value = std::env::var_os("SHMTRACE_ALLOCATORS");
    let bytes = value.as_ref().map(|v| v.as_encoded_bytes());
    Allocators::parse(bytes).unwrap_or_else(|allocators::Malformed| {
        warnings.push(format!(
            "SHMTRACE_ALLOCATORS={} {}",
            value.unwrap_or_default().to_string_lossy(),
            allocators::MALFORMED
        ));
        Allocators::default()
    })
}

/// The allocator module a mapping's call site (else a frame above it, innermost first) lies
/// in, by the module map of the image that made it.
fn allocator_of<'a>(
    allocators: &Allocators,
    modules: Option<&'a [Module]>,
    site: Option<u64>,
    stack: &[u64],
) -> Option<&'a str> {
    let modules = modules?;
    site.into_iter()
        .chain(stack.iter().copied())
        .find_map(|addr| {
            // A return address is one past its call: the call is where the byte before it is.
            let call = addr.checked_sub(1)?;
            modules
                .iter()
                .find(|m| m.start <= call && call < m.end)
                .filter(|m| allocators.is_allocator(m.path.as_bytes()))
                .map(|m| m.path.as_str())
        })
}

/// Adds `count` mappings of `bytes` to the retained group of (`pid`, `module`).
fn retain(groups: &mut Vec<Retained>, pid: i32, module: &str, count: u64, bytes: u64) {
    match groups
        .iter_mut()
        .find(|g| g.pid == pid && g.module == module)
    {
        Some(g) => {
            g.count += count;
            g.bytes += bytes;
        }
        None => groups.push(Retained {
            pid,
            module: module.to_string(),
            count,
            bytes,
        }),
    }
}

/// Attachments and mappings never released, from each exit report (all counted in the
/// verdict, those of the processes shown listed). Mappings an allocator made are set aside as
/// retained: those the shim already set aside, and those of older shims (or of a run with
/// another `SHMTRACE_ALLOCATORS`) found here by their sites.
fn exit_reports(
    collector: &Collector,
    tree: &Tree,
    view: &ViewOptions,
    allocators: &Allocators,
    symbolizer: &mut Symbolizer,
    report: &mut Report,
) {
    let mut reports: Vec<_> = collector.reports.iter().collect();
    reports.sort_by_key(|(pid, _)| tree.rank(**pid));
    for (&pid, (pos, r)) in reports {
        let modules = tree.modules_at(pid, *pos, Micros::MAX);
        let mut retained = Vec::new();
        for g in &r.retained {
            retain(&mut retained, pid, &g.module, g.count, g.bytes);
        }
        let mut own = Vec::new();
        for m in &r.mappings {
            match allocators
                .enabled()
                .then(|| allocator_of(allocators, modules, m.site, &m.stack))
                .flatten()
            {
                Some(module) => retain(&mut retained, pid, module, m.count, m.bytes),
                None => own.push(m),
            }
        }
        retained.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.module.cmp(&b.module)));
        report.verdict.attachments += r.attachments.len() as u64;
        for m in &own {
            report.verdict.mappings += m.count;
            report.verdict.mapping_bytes += m.bytes;
        }
        for g in &retained {
            report.verdict.retained_mappings += g.count;
            report.verdict.retained_bytes += g.bytes;
        }
        if !view.shows_pid(pid) {
            continue;
        }
        report.retained.extend(retained);
        let mut site = |addr: Option<u64>, stack: &[u64]| {
            (
                addr.map(|a| symbolizer.symbolize(a, modules)),
                symbolizer.symbolize_all(stack, modules),
            )
        };
        for a in &r.attachments {
            let (site, stack) = site(a.site, &a.stack);
            report.attachments.push(Attachment {
                pid,
                shmid: a.shmid,
                addr: a.addr,
                size: a.size,
                readonly: a.readonly,
                site,
                stack,
            });
        }
        for m in own {
            let (site, stack) = site(m.site, &m.stack);
            report.mappings.push(Mappings {
                pid,
                count: m.count,
                bytes: m.bytes,
                object: m.object.clone(),
                site,
                stack,
            });
        }
    }
}

/// The still reachable attachments and mappings of each exit report (all counted in the
/// verdict, those of the processes shown listed), and what the scans cost.
fn reachable_at_exit(
    collector: &Collector,
    tree: &Tree,
    view: &ViewOptions,
    symbolizer: &mut Symbolizer,
    report: &mut Report,
) {
    let v = &mut report.verdict;
    v.count_reachable = view.count_reachable;
    let mut reports: Vec<_> = collector.reports.iter().collect();
    reports.sort_by_key(|(pid, _)| tree.rank(**pid));
    for (&pid, (pos, r)) in reports {
        v.scanned_bytes += r.scanned.0;
        v.scan_ns += r.scanned.1;
        v.reachable += r.reachable_attachments.len() as u64;
        v.reachable_bytes += r.reachable_attachments.iter().map(|a| a.size).sum::<u64>();
        for m in &r.reachable {
            v.reachable += m.count;
            v.reachable_bytes += m.bytes;
        }
        if !view.shows_pid(pid) {
            continue;
        }
        let modules = tree.modules_at(pid, *pos, Micros::MAX);
        let attachments = r
            .reachable_attachments
            .iter()
            .map(|a| (Some(a.shmid), None, 1, a.size, a.site, &a.stack));
        let mappings = r
            .reachable
            .iter()
            .map(|m| (None, m.object.clone(), m.count, m.bytes, m.site, &m.stack));
        for (shmid, object, count, bytes, site, stack) in attachments.chain(mappings) {
            report.reachable.push(Reachable {
                pid,
                shmid,
                object,
                count,
                bytes,
                site: site.map(|a| symbolizer.symbolize(a, modules)),
                stack: symbolizer.symbolize_all(stack, modules),
            });
        }
    }
}

/// `enter` records never followed by their `call` record, oldest first.
fn blocked_calls(
    collector: &Collector,
    tree: &Tree,
    view: &ViewOptions,
    symbolizer: &mut Symbolizer,
    processes: &[Process],
) -> Vec<Blocked> {
    let mut pending: Vec<&(Pos, Call)> = collector.pending.values().flatten().collect();
    pending.sort_by_key(|(pos, c)| (c.ts, *pos));
    pending
        .into_iter()
        .filter(|(_, c)| view.shows_pid(c.pid) && view.shows_fn(&c.func))
        .map(|(pos, c)| {
            let modules = tree.modules_at(c.pid, *pos, c.ts);
            Blocked {
                pid: c.pid,
                tid: c.tid,
                func: c.func.clone(),
                args: c.args.clone(),
                site: c.caller.map(|a| symbolizer.symbolize(a, modules)),
                stack: symbolizer.symbolize_all(&c.stack, modules),
                since: c.ts,
                still_waiting: processes
                    .iter()
                    .any(|p| p.pid == c.pid && p.ending == Ending::StillRunning),
            }
        })
        .collect()
}

/// Per function over the processes and functions shown, in the hooks' order.
fn call_stats(collector: &Collector, view: &ViewOptions) -> Vec<CallStat> {
    let mut by_fn: BTreeMap<String, CallStat> = BTreeMap::new();
    for ((pid, func), stat) in &collector.stats {
        if !view.shows_pid(*pid) || !view.shows_fn(func) {
            continue;
        }
        let total = by_fn.entry(func.clone()).or_insert_with(|| CallStat {
            func: func.clone(),
            ..CallStat::default()
        });
        total.calls += stat.calls;
        total.failed += stat.failed;
        total.total_ns = total.total_ns.saturating_add(stat.total_ns);
        total.max_ns = total.max_ns.max(stat.max_ns);
    }
    let order = |f: &str| {
        Func::ALL
            .iter()
            .position(|g| g.name() == f)
            .unwrap_or(usize::MAX)
    };
    let mut calls: Vec<CallStat> = by_fn.into_values().collect();
    calls.sort_by_key(|s| (order(&s.func), s.func.clone()));
    calls
}
