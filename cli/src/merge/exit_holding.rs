//! `SHM009` exit-holding-semaphore, judged over the whole tree.
//!
//! The shim sees only its own process: at exit it reports a semaphore it took without
//! `SEM_UNDO` and never gave back, if the value is 0 then. It cannot tell a lock kept from a
//! token a partner gave it (ping-pong) or an item a producer posted. The command can: from the
//! holdings of every process, a process that exited still holds units only beyond what
//! producers supplied (`Semaphore::held_excess`), and as far as the set as a whole is short of
//! them (a token taken from one semaphore and handed on through another is not held), judged
//! at the end of each stretch of the
//! semaphore's holdings (its removal, a `SETVAL`/`SETALL`, or now), so that what another
//! process gave after the exit counts too; a process that exited after that end (its set was
//! removed or reset under it) held nothing anyone could wait for. The command's verdict
//! replaces the shim's records of this code.

use std::collections::BTreeMap;

use super::holdings::{Held, Settled};
use crate::logs::{Finding, Micros, Pos};

pub(super) const CODE: &str = "SHM009";

/// One finding per process with an exit report and semaphore it took without `SEM_UNDO` and
/// nobody made up for, at the site of its last decrement of it. `exited`: when a process that
/// exited did so (its last record), `None` for the others.
pub(super) fn findings(
    settled: &Settled,
    exited: impl Fn(i32) -> Option<Micros>,
) -> Vec<(Pos, Finding)> {
    let effective = |pid: i32, held: &Held| match exited(pid) {
        Some(_) => held.after_exit(),
        None => held.net,
    };
    // Units move from one semaphore of a set to another: ping-pong takes the token from one
    // and hands it on through the other. What is held is what the set as a whole is short of.
    let mut set_excess: BTreeMap<(i64, Option<Micros>), i64> = BTreeMap::new();
    for ((semid, _), sem, end) in settled.epochs() {
        *set_excess.entry((semid, end)).or_default() += sem.held_excess(effective);
    }
    let mut out = Vec::new();
    for ((semid, num), sem, end) in settled.epochs() {
        let excess = sem.held_excess(effective).min(set_excess[&(semid, end)]);
        if excess <= 0 {
            continue;
        }
        for (&pid, held) in &sem.by_pid {
            let kept = -held.after_exit();
            let exited_before_end = exited(pid).is_some_and(|at| end.is_none_or(|end| at < end));
            let Some(take) = held.last_take.filter(|_| exited_before_end && kept > 0) else {
                continue;
            };
            let taken = kept.min(excess);
            out.push((
                take.pos,
                Finding {
                    pid,
                    ts: take.ts,
                    code: CODE.into(),
                    name: "exit-holding-semaphore".into(),
                    severity: "warning".into(),
                    func: "semop".into(),
                    site: take.caller,
                    message: format!(
                        "the process exits holding semaphore {num} of set semid={semid} \
                         (decremented by {taken} without SEM_UNDO, and no other process gave \
                         it back), so processes waiting for it may wait forever; use SEM_UNDO \
                         or give it back before exit"
                    ),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::holdings::Holdings;
    use super::*;
    use crate::logs::Call;

    fn record(h: &mut Holdings, pid: i32, ts: i64, func: &str, args: Value) {
        let Value::Object(args) = args else {
            unreachable!()
        };
        let call = Call {
            pid,
            tid: pid,
            ts,
            func: func.into(),
            args,
            ret: Some(json!(0)),
            errno: None,
            dur_ns: 0,
            caller: Some(0x1000 + ts as u64),
            stack: vec![],
            created: None,
        };
        h.record(
            Pos {
                file: 0,
                line: ts as usize,
            },
            &call,
        );
    }

    fn op(h: &mut Holdings, pid: i32, ts: i64, num: u16, delta: i16, flg: &str) {
        let sops = json!([{"sem_num": num, "sem_op": delta, "sem_flg": flg}]);
        record(
            h,
            pid,
            ts,
            "semop",
            json!({"semid": 7, "sops": sops, "nsops": 1}),
        );
    }

    fn setval(h: &mut Holdings, ts: i64, num: u16, val: i64) {
        let args = json!({"semid": 7, "semnum": num, "cmd": "SETVAL", "val": val});
        record(h, 1, ts, "semctl", args);
    }

    fn rmid(h: &mut Holdings, ts: i64) {
        record(
            h,
            1,
            ts,
            "semctl",
            json!({"semid": 7, "semnum": 0, "cmd": "IPC_RMID"}),
        );
    }

    /// The findings when `exited` processes exited at time 100 (the others still run).
    fn found(h: &Holdings, exited: &[i32]) -> Vec<(i32, Option<u64>, String)> {
        findings(&h.settle(), |pid| exited.contains(&pid).then_some(100))
            .into_iter()
            .map(|(_, f)| (f.pid, f.site, f.message))
            .collect()
    }

    #[test]
    fn a_lock_kept_at_exit_is_found_even_once_its_set_is_removed() {
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 10, 2, 0, -1, "0");
        rmid(&mut h, 300);
        let got = found(&h, &[10]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].0, got[0].1), (10, Some(0x1002)));
        assert!(
            got[0]
                .2
                .contains("semaphore 0 of set semid=7 (decremented by 1")
        );
        // Still running: not an exit.
        assert!(found(&h, &[]).is_empty());
        // Its set removed before it exited: nothing left to wait for.
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 10, 2, 0, -1, "0");
        rmid(&mut h, 3);
        assert!(found(&h, &[10]).is_empty());
    }

    #[test]
    fn a_lock_kept_after_posting_what_another_process_took_is_still_held() {
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 11, 2, 1, -1, "0");
        op(&mut h, 10, 3, 0, -1, "0");
        op(&mut h, 10, 4, 1, 1, "0");
        rmid(&mut h, 300);
        let got = found(&h, &[10, 11]);
        assert_eq!(got.iter().map(|f| f.0).collect::<Vec<_>>(), [10], "{got:?}");
    }

    #[test]
    fn sem_undo_or_giving_back_is_no_finding() {
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 10, 2, 0, -1, "SEM_UNDO");
        op(&mut h, 11, 3, 1, -1, "0");
        op(&mut h, 11, 4, 1, 1, "0");
        assert!(found(&h, &[10, 11]).is_empty());
    }

    #[test]
    fn ping_pong_tokens_given_by_the_partner_are_not_held() {
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        let mut ts = 2;
        for _ in 0..3 {
            op(&mut h, 10, ts, 0, -1, "0");
            op(&mut h, 10, ts + 1, 1, 1, "0");
            op(&mut h, 11, ts + 2, 1, -1, "0");
            op(&mut h, 11, ts + 3, 0, 1, "0");
            ts += 4;
        }
        // Each side's last give, then both exit and the parent removes the set.
        op(&mut h, 10, ts, 1, 1, "0");
        op(&mut h, 11, ts + 1, 0, 1, "0");
        rmid(&mut h, 300);
        assert!(found(&h, &[10, 11]).is_empty());
        // 11 ended first: 10's last round took its last give too, and handed it on to
        // semaphore 1, which nobody takes any more. Semaphore 0 is short of its starting unit,
        // but the set is not.
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 10, 2, 0, -1, "0");
        op(&mut h, 10, 3, 1, 1, "0");
        op(&mut h, 11, 4, 1, -1, "0");
        op(&mut h, 11, 5, 0, 1, "0");
        op(&mut h, 11, 6, 0, 1, "0");
        op(&mut h, 10, 7, 0, -1, "0");
        op(&mut h, 10, 8, 1, 1, "0");
        op(&mut h, 10, 9, 0, -1, "0");
        op(&mut h, 10, 10, 1, 1, "0");
        op(&mut h, 10, 11, 1, 1, "0");
        rmid(&mut h, 300);
        assert!(found(&h, &[10, 11]).is_empty());
    }

    #[test]
    fn a_reset_after_the_exit_does_not_hide_what_was_kept_before() {
        let mut h = Holdings::default();
        setval(&mut h, 1, 0, 1);
        op(&mut h, 10, 2, 0, -1, "0");
        setval(&mut h, 300, 0, 1);
        assert_eq!(found(&h, &[10]).len(), 1);
    }
}
