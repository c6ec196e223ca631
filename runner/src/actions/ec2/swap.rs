//! The two-step security group swap of one interface, as one unit: allow-all, then the
//! isolation group, compensated when the second move fails, in a task of its own that a step
//! timeout or Ctrl-C cannot cut in half ([`settle`] waits for every swap in flight).

use super::*;

/// Swaps still running, in tasks of their own: [`settle`] waits for them.
pub(super) static SWAPS_IN_FLIGHT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
/// Woken whenever a swap ends.
pub(super) static SWAP_ENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One lock per interface: a retried or concurrent isolation of the same interface waits
/// for the swap in flight instead of interleaving its moves with it.
pub(super) fn interface_lock(eni: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let locks = LOCKS.get_or_init(Default::default);
    let mut map = locks.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(eni.to_owned()).or_default().clone()
}

/// Waits until every interface swap started by this process has ended (moved to the
/// isolation group, compensated, or failed loudly). The executor calls it before `finally`
/// and before sealing, so no swap is cut off by the end of the run or the process.
pub async fn settle() {
    use std::sync::atomic::Ordering;
    loop {
        let ended = SWAP_ENDED.notified();
        if SWAPS_IN_FLIGHT.load(Ordering::SeqCst) == 0 {
            return;
        }
        ended.await;
    }
}

/// Counts a swap as in flight for as long as it lives (even if its task panics).
pub(super) struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        SWAPS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        SWAPS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        SWAP_ENDED.notify_waiters();
    }
}

/// Moves one interface to the allow-all group, then to the isolation group, as one unit that
/// a step `timeout` or Ctrl-C cannot cut in half: the two moves run in a task of their own,
/// which goes on to its end even when the step's future is dropped (and [`settle`] waits for
/// it). If the move to the isolation group fails (or the first move's outcome is unknown),
/// a compensating move follows: to the isolation group again, else back to the recorded
/// `originals`; every move is journaled, and the step fails loudly whatever the
/// compensation achieved.
pub(super) async fn swap_interface(
    ctx: &ActionCtx,
    eni: &str,
    allow_all: Vec<String>,
    isolation: Vec<String>,
    originals: Vec<String>,
) -> Result<(), ActionError> {
    let ctx = ctx.clone();
    let name = eni.to_owned();
    let eni = eni.to_owned();
    let lock = interface_lock(&eni);
    let guard = InFlight::start();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _guard = guard;
        let _held = lock.lock_owned().await;
        let result = swap_unit(&ctx, &eni, &allow_all, &isolation, &originals).await;
        // The step gave up waiting (its timeout fired): a failure must still be said.
        if let Err(Err(e)) = tx.send(result) {
            ctx.gap(
                &format!("ec2:ModifyNetworkInterfaceAttribute ({eni}: the swap ended after its step timed out)"),
                &e,
            );
        }
    });
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Target(format!(
            "the security group swap task of {name} ended abnormally; check the interface's groups"
        ))),
    }
}

pub(super) async fn swap_unit(
    ctx: &ActionCtx,
    eni: &str,
    allow_all: &[String],
    isolation: &[String],
    originals: &[String],
) -> Result<(), ActionError> {
    let first = set_eni_groups(ctx, eni, allow_all, "allow-all").await;
    let failed = match first {
        // Refused: the interface is where it was, nothing to compensate.
        Err(e) if !retryable_create(&e) => return Err(e),
        // No clear answer (no response, a server error): it may be in the allow-all group.
        Err(e) => e,
        Ok(()) => match set_eni_groups(ctx, eni, isolation, "isolation").await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        },
    };
    if ctx.dry_run {
        return Err(failed);
    }
    // Compensation: the isolation group again, else the recorded originals.
    let again = set_eni_groups(ctx, eni, isolation, "compensate:isolation").await;
    let outcome = match again {
        Ok(()) => format!("a compensating move put it in the isolation group {}", isolation.join(",")),
        Err(e2) => match set_eni_groups(ctx, eni, originals, "compensate:originals").await {
            Ok(()) => format!(
                "the compensating move to the isolation group failed too ({e2}); it was moved back to its original groups {}: IT IS NOT ISOLATED",
                originals.join(",")
            ),
            Err(e3) => format!(
                "the compensating moves failed too (isolation group: {e2}; original groups: {e3}): IT MAY BE IN THE ALLOW-ALL GROUP {}, OPEN TO ALL TRAFFIC; move it by hand now: aws ec2 modify-network-interface-attribute --network-interface-id {eni} --groups {}",
                allow_all.join(","),
                isolation.join(" ")
            ),
        },
    };
    Err(ActionError::Target(format!(
        "interface {eni}: the move to the isolation group failed ({failed}); {outcome}"
    )))
}
