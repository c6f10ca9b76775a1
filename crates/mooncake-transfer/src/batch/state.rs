//! Per-request progress of a batch and the [`Batch`] handle for submit-then-poll use.

use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{drive, plan};
use crate::engine::TransferEngine;
use crate::errors::TransferError;
use crate::metrics::Metrics;
use crate::tcp::slice::CancelGuard;
use crate::TransferRequest;

/// Where one request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Done,
    Failed(TransferError),
}

pub(super) struct Progress {
    pub(super) left: usize,
    err: Option<TransferError>,
}

/// Shared between a driver and whoever polls it.
pub struct BatchState {
    pub(super) status: Mutex<(Vec<RequestStatus>, Vec<Progress>)>,
    done_tx: watch::Sender<bool>,
}

impl BatchState {
    pub(crate) fn new(n: usize) -> Self {
        let status = (0..n).map(|_| RequestStatus::Pending).collect();
        let progress = (0..n).map(|_| Progress { left: 0, err: None }).collect();
        Self {
            status: Mutex::new((status, progress)),
            done_tx: watch::channel(false).0,
        }
    }

    pub(super) fn slice_done(
        &self,
        req: usize,
        result: Result<(), TransferError>,
        metrics: &Metrics,
    ) {
        let mut g = self.status.lock();
        let (status, progress) = &mut *g;
        let p = &mut progress[req];
        if let Err(e) = result {
            p.err.get_or_insert(e);
        }
        p.left = p.left.saturating_sub(1);
        if p.left == 0 {
            status[req] = match p.err.take() {
                None => RequestStatus::Done,
                Some(e) => {
                    Metrics::add(&metrics.requests_failed, 1);
                    RequestStatus::Failed(e)
                }
            };
        }
    }

    pub(super) fn finish(&self) {
        self.done_tx.send_replace(true);
    }

    pub(crate) fn results(&self) -> Vec<Result<(), TransferError>> {
        self.status
            .lock()
            .0
            .iter()
            .map(|s| match s {
                RequestStatus::Done => Ok(()),
                RequestStatus::Failed(e) => Err(e.clone()),
                RequestStatus::Pending => Err(TransferError::Shutdown),
            })
            .collect()
    }
}

/// A submitted batch. Dropping it cancels what has not completed.
pub struct Batch {
    state: Arc<BatchState>,
    task: JoinHandle<()>,
    guard: CancelGuard,
}

pub(crate) fn submit(eng: Arc<TransferEngine>, reqs: Vec<TransferRequest>) -> Batch {
    let state = Arc::new(BatchState::new(reqs.len()));
    let plan = plan(&eng, &reqs, &state);
    let guard = plan.guard();
    let st = state.clone();
    let task = tokio::spawn(async move { drive(&eng, &reqs, plan, &st).await });
    Batch { state, task, guard }
}

impl Batch {
    pub fn len(&self) -> usize {
        self.state.status.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The status of request `i` (`None` when out of range).
    pub fn status(&self, i: usize) -> Option<RequestStatus> {
        self.state.status.lock().0.get(i).cloned()
    }

    /// Whether every request has completed or failed.
    pub fn is_done(&self) -> bool {
        *self.state.done_tx.borrow()
    }

    /// Waits for every request; one result per request, in order.
    pub async fn wait(mut self) -> Vec<Result<(), TransferError>> {
        let mut rx = self.state.done_tx.subscribe();
        let _ = rx.wait_for(|d| *d).await;
        self.guard.disarm();
        self.state.results()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
