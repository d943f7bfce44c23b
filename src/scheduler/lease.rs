//! The node's lease: which registration it runs under, whether that
//! registration is believed alive, and which runs it is executing.
//!
//! ```text
//!   heartbeat service ──owns──▶ Lease ──read-only──▶ claim loop, workers,
//!   (renew, lose, re-register)                         shell watchdogs
//!
//!   claim loop ──▶ Ledger ◀── heartbeat (reconcile)
//!   (claims under the gate,     (snapshot + renew under the gate)
//!    registers what it started)
//! ```
//!
//! The database is the authority: every claim, finish and heartbeat is
//! fenced on the registration being alive by lease in database time
//! (`db::nodes::alive_at`). What the node keeps here is only what it needs to
//! act on quickly: a cancellation token per registration (cancelled when the
//! lease is lost, so every run claimed under it is stopped), the instant of
//! the last renewal (fed to shell jobs' watchdogs), and the ledger of runs
//! being executed, which the heartbeat sends so the database can resolve
//! runs it believes are running here but are not (ambiguous commits).
//!
//! Only the heartbeat service (`heartbeat.rs`) changes the lease: the
//! mutating methods are `pub(super)` and documented as the heartbeat's.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The registration this node runs under, and its state.
#[derive(Debug)]
pub(crate) struct Lease {
    node_id: RwLock<String>,
    /// Every registration this process has had, for the clean stop.
    registrations: Mutex<Vec<String>>,
    /// Cancelled when the lease is lost; replaced by a fresh child of `kill`
    /// afterwards. Every run's token is a child of the token of the
    /// registration it was claimed under.
    token: Mutex<CancellationToken>,
    /// Cancelled at the end of the shutdown grace period: stops every run.
    kill: CancellationToken,
    /// Cancelled when the current registration is lost (never by `kill`):
    /// tells a run to stop at once, not after a grace period.
    lost_token: Mutex<CancellationToken>,
    ok: watch::Sender<bool>,
    /// When the last heartbeat that renewed the lease started; feeds the
    /// shell jobs' lease watchdogs (`shell`, "Lease watchdog").
    renewed: watch::Sender<Instant>,
}

impl Lease {
    pub(crate) fn new(kill: CancellationToken) -> Lease {
        let (ok, _) = watch::channel(true);
        // Registering stamps the first heartbeat, no earlier than this.
        let (renewed, _) = watch::channel(Instant::now());
        Lease {
            node_id: RwLock::new(String::new()),
            registrations: Mutex::new(Vec::new()),
            token: Mutex::new(kill.child_token()),
            kill,
            lost_token: Mutex::new(CancellationToken::new()),
            ok,
            renewed,
        }
    }

    pub(crate) fn node_id(&self) -> String {
        self.node_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn registrations(&self) -> Vec<String> {
        self.registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn is_ok(&self) -> bool {
        *self.ok.borrow()
    }

    pub(crate) fn watch_ok(&self) -> watch::Receiver<bool> {
        self.ok.subscribe()
    }

    pub(crate) fn watch_renewed(&self) -> watch::Receiver<Instant> {
        self.renewed.subscribe()
    }

    /// The node id to claim under and the token its runs must obey, read
    /// together so a run is always bound to the registration it was claimed
    /// under: if the heartbeat loses the lease in between, the claim is
    /// fenced in the database, or its runs are cancelled by this token.
    pub(crate) fn claim_context(&self) -> (String, CancellationToken, CancellationToken) {
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        let lost = self
            .lost_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (self.node_id(), token.clone(), lost)
    }

    /// Cancelled at the end of the shutdown grace: stop every run now.
    pub(crate) fn kill_all(&self) {
        self.kill.cancel();
    }

    /// The heartbeat's: a (new) registration is in force.
    pub(super) fn registered(&self, id: String, renewal_started: Instant) {
        {
            let mut current = self.node_id.write().unwrap_or_else(PoisonError::into_inner);
            *current = id.clone();
        }
        self.registrations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id);
        self.renewed.send_replace(renewal_started);
    }

    /// The heartbeat's: the lease was renewed by a heartbeat that started at
    /// `started`. Wakes the claim loop only if the lease had been lost: the
    /// loop listens for changes, and waking it on every beat made each
    /// heartbeat a claim too.
    pub(super) fn renewed(&self, started: Instant) {
        self.renewed.send_replace(started);
        self.ok
            .send_if_modified(|held| !std::mem::replace(held, true));
    }

    /// The heartbeat's: the registration is dead (or may be, by now, in
    /// database time). Stop claiming and cancel every run claimed under it;
    /// their finishes would be fenced anyway.
    pub(super) fn lost(&self) {
        self.ok.send_replace(false);
        // First: a run that sees its token cancelled must already see why.
        let lost = std::mem::take(
            &mut *self
                .lost_token
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        lost.cancel();
        let fresh = self.kill.child_token();
        let old = {
            let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *token, fresh)
        };
        old.cancel();
    }
}

/// The runs this node is executing, and the gate that keeps the heartbeat's
/// reconciliation from racing a claim: the claim loop holds the gate from
/// before its claim transaction until the runs it started are in the ledger;
/// the heartbeat holds it from its snapshot until its statement has run. So
/// a run the database has `running` on this registration but that is not in
/// the snapshot was never going to be executed here.
///
/// Each run's entry also holds its cancellation token, so an operator's
/// cancel (`crondeck.op_cancel`, seen by the heartbeat) stops exactly that
/// run, and who asked, so it is recorded `cancelled` rather than
/// `interrupted`.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    executing: Mutex<HashMap<i64, RunControl>>,
    pub(crate) gate: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct RunControl {
    token: CancellationToken,
    cancelled_by: Option<String>,
}

impl Ledger {
    /// Record that `run_id` is being executed under `token`; it leaves the
    /// ledger when the returned guard drops (the worker ended, however it
    /// ended).
    pub(crate) fn enter(
        self: &std::sync::Arc<Self>,
        run_id: i64,
        token: CancellationToken,
    ) -> LedgerEntry {
        self.executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                run_id,
                RunControl {
                    token,
                    cancelled_by: None,
                },
            );
        LedgerEntry {
            ledger: self.clone(),
            run_id,
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stop `run_id` at `by`'s request; false if it is not executing here
    /// (or was already asked).
    pub(crate) fn cancel(&self, run_id: i64, by: &str) -> bool {
        let mut executing = self
            .executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match executing.get_mut(&run_id) {
            Some(control) if control.cancelled_by.is_none() => {
                control.cancelled_by = Some(by.to_string());
                control.token.cancel();
                true
            }
            _ => false,
        }
    }

    /// Who asked to cancel `run_id`, if anyone did.
    pub(crate) fn cancelled_by(&self, run_id: i64) -> Option<String> {
        self.executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&run_id)
            .and_then(|c| c.cancelled_by.clone())
    }
}

/// A run in the ledger; removes it on drop.
#[derive(Debug)]
pub(crate) struct LedgerEntry {
    ledger: std::sync::Arc<Ledger>,
    run_id: i64,
}

impl Drop for LedgerEntry {
    fn drop(&mut self) {
        self.ledger
            .executing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.run_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_run_leaves_the_ledger_when_its_worker_ends_even_by_panic() {
        let ledger = Arc::new(Ledger::default());
        let entry = ledger.enter(7, CancellationToken::new());
        let _other = ledger.enter(3, CancellationToken::new());
        assert_eq!(ledger.snapshot(), vec![3, 7]);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = entry;
            panic!("worker panicked");
        }));
        assert!(result.is_err());
        assert_eq!(ledger.snapshot(), vec![3]);
    }

    #[test]
    fn a_cancel_stops_that_run_only_and_remembers_who_asked() {
        let ledger = Arc::new(Ledger::default());
        let (one, two) = (CancellationToken::new(), CancellationToken::new());
        let _one = ledger.enter(1, one.clone());
        let _two = ledger.enter(2, two.clone());
        assert!(ledger.cancel(1, "alice"));
        assert!(!ledger.cancel(1, "bob"), "asked twice");
        assert!(!ledger.cancel(9, "alice"), "not executing here");
        assert!(one.is_cancelled() && !two.is_cancelled());
        assert_eq!(ledger.cancelled_by(1).as_deref(), Some("alice"));
        assert_eq!(ledger.cancelled_by(2), None);
    }

    #[test]
    fn losing_the_lease_cancels_runs_of_that_registration_only() {
        let lease = Lease::new(CancellationToken::new());
        lease.registered("a".into(), Instant::now());
        let (id, first, first_lost) = lease.claim_context();
        assert_eq!(id, "a");
        lease.lost();
        assert!(first.is_cancelled() && first_lost.is_cancelled());
        assert!(!lease.is_ok());
        lease.registered("b".into(), Instant::now());
        lease.renewed(Instant::now());
        let (id, second, second_lost) = lease.claim_context();
        assert_eq!(id, "b");
        assert!(!second.is_cancelled() && !second_lost.is_cancelled());
        assert!(lease.is_ok());
        assert_eq!(
            lease.registrations(),
            vec!["a".to_string(), "b".to_string()]
        );
        lease.kill_all();
        assert!(second.is_cancelled());
        assert!(
            !second_lost.is_cancelled(),
            "a shutdown is not a lost lease"
        );
    }
}
