//! The views of every workload, recompiled on each store change and published per workload.
//!
//! Each workload has a `watch` channel holding its latest view. A recompilation compares every
//! new view with the published one (ignoring the version) and publishes, with a new version,
//! only those that changed: a proxy is pushed exactly when what it needs changed. Each view
//! carries the instant of the configuration change that produced it, from which the push
//! convergence time is measured.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use meshward_api::v1::ProxyView;
use tokio::sync::watch;

/// A published view and when the configuration change behind it happened.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The view, with its version.
    pub(crate) view: Arc<ProxyView>,
    /// The first configuration change since the previous compilation (the compilation
    /// itself when none was recorded, e.g. at start).
    pub(crate) changed_at: Instant,
}

/// The latest view of every workload, one channel per workload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hub {
    inner: Arc<Mutex<HubState>>,
}

#[derive(Debug, Default)]
struct HubState {
    /// The last version handed out, mesh-wide, so versions never repeat across workloads.
    version: u64,
    /// The first configuration change not compiled yet.
    pending_change: Option<Instant>,
    channels: HashMap<String, watch::Sender<Option<Published>>>,
}

impl Hub {
    /// Publishes a freshly compiled set of views, keyed by `name.namespace`. Workloads missing
    /// from `views` get `None`: their proxies keep their last view (static stability) but are
    /// told nothing new. Returns how many views changed.
    pub(crate) fn publish(&self, views: HashMap<String, ProxyView>) -> usize {
        let mut state = self.lock();
        let changed_at = state.pending_change.take().unwrap_or_else(Instant::now);
        let mut changed = 0;
        for (workload, mut view) in views {
            let sender = state
                .channels
                .entry(workload)
                .or_insert_with(|| watch::channel(None).0)
                .clone();
            let same = sender.borrow().as_ref().is_some_and(|old| {
                view.version = old.view.version;
                *old.view == view
            });
            if !same {
                state.version += 1;
                view.version = state.version;
                sender.send_replace(Some(Published {
                    view: Arc::new(view),
                    changed_at,
                }));
                changed += 1;
            }
        }
        changed
    }

    /// Records that the configuration changed now; the next [`publish`](Self::publish) stamps
    /// its views with the first such instant.
    pub(crate) fn config_changed(&self) {
        self.lock().pending_change.get_or_insert_with(Instant::now);
    }

    /// Subscribes to the views of `workload` (`name.namespace`), which may not exist yet.
    pub(crate) fn subscribe(&self, workload: &str) -> watch::Receiver<Option<Published>> {
        let mut state = self.lock();
        state
            .channels
            .entry(workload.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // Every update above completes before the guard drops; poisoning leaves no torn state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_api::v1::WorkloadView;

    fn view(address: &str) -> ProxyView {
        ProxyView {
            workload: Some(WorkloadView {
                address: address.into(),
                ..WorkloadView::default()
            }),
            ..ProxyView::default()
        }
    }

    #[test]
    fn only_changed_views_get_a_new_version() {
        let hub = Hub::default();
        let a = hub.subscribe("a.ns");
        let b = hub.subscribe("b.ns");
        let views = |x: &str, y: &str| {
            HashMap::from([("a.ns".to_owned(), view(x)), ("b.ns".to_owned(), view(y))])
        };
        assert_eq!(hub.publish(views("1", "2")), 2);
        let version = |rx: &watch::Receiver<Option<Published>>| {
            rx.borrow().as_ref().map(|p| p.view.version).unwrap()
        };
        let (va, vb) = (version(&a), version(&b));
        assert_eq!(
            hub.publish(views("1", "2")),
            0,
            "identical views are not pushed"
        );
        assert_eq!(hub.publish(views("1", "3")), 1);
        assert_eq!(version(&a), va);
        assert!(version(&b) > vb);
    }

    #[test]
    fn views_carry_the_first_change_since_the_last_compilation() {
        let hub = Hub::default();
        let rx = hub.subscribe("a.ns");
        hub.config_changed();
        let first = hub.lock().pending_change.unwrap();
        hub.config_changed();
        hub.publish(HashMap::from([("a.ns".to_owned(), view("1"))]));
        assert_eq!(rx.borrow().as_ref().unwrap().changed_at, first);
        assert!(hub.lock().pending_change.is_none());
    }
}
