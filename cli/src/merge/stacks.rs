//! One call site reached through many stacks (`--stack`): the mappings of a process made at one
//! site, grouped, with their distinct stacks counted, the most common first.

use super::model::Mappings;
use crate::symbols::Symbol;

/// The mappings one process made at one call site.
pub struct SiteGroup<'a> {
    pub pid: i32,
    pub count: u64,
    pub bytes: u64,
    pub site: Option<&'a Symbol>,
    pub object: Option<&'a str>,
    /// Each distinct stack above the site with its number of mappings, the most common first.
    pub stacks: Vec<(u64, &'a [Symbol])>,
}

/// `mappings` (one entry per process, site and stack) grouped by process and site, in the
/// order each group first appears.
pub fn by_site(mappings: &[Mappings]) -> Vec<SiteGroup<'_>> {
    let mut groups: Vec<SiteGroup<'_>> = Vec::new();
    for m in mappings {
        let same = |g: &SiteGroup<'_>| {
            g.pid == m.pid && g.site == m.site.as_ref() && g.object == m.object.as_deref()
        };
        let group = match groups.iter().position(same) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(SiteGroup {
                    pid: m.pid,
                    count: 0,
                    bytes: 0,
                    site: m.site.as_ref(),
                    object: m.object.as_deref(),
                    stacks: Vec::new(),
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.count += m.count;
        group.bytes += m.bytes;
        if !m.stack.is_empty() {
            match group
                .stacks
                .iter_mut()
                .find(|(_, s)| *s == m.stack.as_slice())
            {
                Some((n, _)) => *n += m.count,
                None => group.stacks.push((m.count, &m.stack)),
            }
        }
    }
    for g in &mut groups {
        // Stable: equal counts keep their first-seen order.
        g.stacks.sort_by_key(|s| std::cmp::Reverse(s.0));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Symbol {
        Symbol {
            function: Some(name.into()),
            ..Symbol::raw(0x10)
        }
    }

    fn mapping(pid: i32, site: &str, count: u64, stack: &[&str]) -> Mappings {
        Mappings {
            pid,
            count,
            bytes: count * 4096,
            object: None,
            site: Some(frame(site)),
            stack: stack.iter().map(|f| frame(f)).collect(),
        }
    }

    #[test]
    fn one_site_mapping_two_objects_is_two_groups() {
        let mut ring = mapping(1, "alloc", 1, &[]);
        ring.object = Some("memfd:ring".into());
        let mut psm = ring.clone();
        psm.object = Some("/dev/shm/psm".into());
        let mappings = [ring.clone(), psm, ring];
        let groups = by_site(&mappings);
        let objects: Vec<_> = groups.iter().map(|g| (g.object, g.count)).collect();
        assert_eq!(
            objects,
            [(Some("memfd:ring"), 2), (Some("/dev/shm/psm"), 1)]
        );
    }

    #[test]
    fn one_site_many_stacks_is_one_group_most_common_first() {
        let mappings = [
            mapping(1, "alloc", 1, &["a", "main"]),
            mapping(1, "alloc", 5, &["b", "main"]),
            mapping(1, "other", 2, &[]),
            mapping(1, "alloc", 2, &["a", "main"]),
            mapping(2, "alloc", 1, &["a", "main"]),
        ];
        let groups = by_site(&mappings);
        assert_eq!(groups.len(), 3);
        let g = &groups[0];
        assert_eq!((g.pid, g.count, g.bytes), (1, 8, 8 * 4096));
        let counts: Vec<u64> = g.stacks.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts, [5, 3]);
        assert_eq!(g.stacks[0].1[0].function.as_deref(), Some("b"));
        assert!(groups[1].stacks.is_empty());
        assert_eq!(groups[2].pid, 2);
    }
}
