//! What a lane can show in a fixed number of pixel columns, however long the run: per column
//! the highest value of each counter (a peak is never lost between columns), and per column
//! one call (a failed one first) standing for all that column's calls, besides every call the
//! report points at and every creation and removal of a SysV object (up to a cap).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::logs::Micros;
use crate::timeline::{Event, Sample, Timeline};

/// Creations and removals kept per lane beyond one per column (a run creating millions of
/// objects would otherwise draw a marker each).
const LIFECYCLE_PER_LANE: usize = 2000;

/// Maps time to a column in `0..columns`.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub first: Micros,
    pub last: Micros,
    pub columns: usize,
}

impl Scale {
    pub fn column(&self, ts: Micros) -> usize {
        let span = (self.last - self.first).max(1) as f64;
        let at = ((ts - self.first).max(0) as f64 / span * self.columns as f64) as usize;
        at.min(self.columns - 1)
    }

    /// The fraction of the run at `ts`, in 0..=1.
    pub fn fraction(&self, ts: Micros) -> f64 {
        let span = (self.last - self.first).max(1) as f64;
        ((ts - self.first) as f64 / span).clamp(0.0, 1.0)
    }
}

/// Per column (`None`: before the process's first change), the highest sample in it.
pub fn peaks(samples: &[Sample], scale: Scale, until: Micros) -> Vec<Option<Sample>> {
    let mut columns: Vec<Option<Sample>> = vec![None; scale.columns];
    let mut current: Option<Sample> = None;
    let mut next = samples.iter().peekable();
    let last_column = scale.column(until);
    for (c, slot) in columns.iter_mut().enumerate().take(last_column + 1) {
        let mut top = current;
        while let Some(s) = next.next_if(|s| scale.column(s.ts) <= c) {
            top = Some(match top {
                None => *s,
                Some(t) => Sample {
                    ts: s.ts,
                    mapped: t.mapped.max(s.mapped),
                    attached: t.attached.max(s.attached),
                    sysv: t.sysv.max(s.sysv),
                    shared_files: t.shared_files.max(s.shared_files),
                },
            });
            current = Some(*s);
        }
        *slot = top;
    }
    columns
}

/// A call shown, and how many calls of its column it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub event: usize,
    pub stands_for: u64,
}

/// The calls drawn, per process, in time order: every one in `wanted`, creations and removals
/// (up to the cap), and one per column for the rest.
pub fn shown_events(
    t: &Timeline,
    scale: Scale,
    wanted: &BTreeSet<usize>,
) -> HashMap<i32, Vec<Shown>> {
    let mut lifecycle: HashMap<i32, usize> = HashMap::new();
    let mut kept: HashMap<i32, BTreeMap<usize, Shown>> = HashMap::new();
    // Per process, per column: the chosen call and how many calls it stands for.
    let mut columns: HashMap<(i32, usize), Shown> = HashMap::new();
    for (i, e) in t.events.iter().enumerate() {
        let special = wanted.contains(&i)
            || (e.effect.is_lifecycle() && {
                let n = lifecycle.entry(e.pid).or_default();
                *n += 1;
                *n <= LIFECYCLE_PER_LANE
            });
        if special {
            kept.entry(e.pid).or_default().insert(
                i,
                Shown {
                    event: i,
                    stands_for: 1,
                },
            );
            continue;
        }
        let slot = columns.entry((e.pid, scale.column(e.ts))).or_insert(Shown {
            event: i,
            stands_for: 0,
        });
        slot.stands_for += 1;
        let chosen = &t.events[slot.event];
        // A failure says more than a success; a call that never returned most of all.
        let rank = |e: &Event| u8::from(e.errno.is_some()) + 2 * u8::from(!e.returned());
        if rank(e) > rank(chosen) {
            slot.event = i;
        }
    }
    for ((pid, _), shown) in columns {
        kept.entry(pid).or_default().insert(shown.event, shown);
    }
    kept.into_iter()
        .map(|(pid, events)| (pid, events.into_values().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts: Micros, mapped: u64) -> Sample {
        Sample {
            ts,
            mapped,
            ..Sample::default()
        }
    }

    #[test]
    fn a_peak_inside_a_column_is_kept_and_the_last_value_carries_on() {
        let scale = Scale {
            first: 0,
            last: 100,
            columns: 10,
        };
        let samples = [sample(11, 5), sample(12, 900), sample(13, 7), sample(55, 1)];
        let cols = peaks(&samples, scale, 80);
        let mapped: Vec<Option<u64>> = cols.iter().map(|c| c.map(|s| s.mapped)).collect();
        assert_eq!(mapped[0], None, "nothing held before the first change");
        assert_eq!(
            mapped[1],
            Some(900),
            "the peak between samples of one column"
        );
        assert_eq!(
            mapped[2..5],
            [Some(7); 3],
            "the last value holds until the next change"
        );
        assert_eq!(
            mapped[5],
            Some(7),
            "held until the change at 55, inside column 5"
        );
        assert_eq!(mapped[6..9], [Some(1); 3]);
        assert_eq!(mapped[9], None, "after the process ended");
    }
}
