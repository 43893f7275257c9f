//! The views of every workload, recompiled on each store change and published per workload.
//!
//! Each workload has a `watch` channel holding its latest view. A recompilation compares every
//! new view with the published one (ignoring the version) and publishes, with a new version,
//! only those that changed: a proxy is pushed exactly when what it needs changed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use meshward_api::v1::ProxyView;
use tokio::sync::watch;

/// The latest view of every workload, one channel per workload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hub {
    inner: Arc<Mutex<HubState>>,
}

#[derive(Debug, Default)]
struct HubState {
    /// The last version handed out, mesh-wide, so versions never repeat across workloads.
    version: u64,
    channels: HashMap<String, watch::Sender<Option<Arc<ProxyView>>>>,
}

impl Hub {
    /// Publishes a freshly compiled set of views, keyed by `name.namespace`. Workloads missing
    /// from `views` get `None`: their proxies keep their last view (static stability) but are
    /// told nothing new. Returns how many views changed.
    pub(crate) fn publish(&self, views: HashMap<String, ProxyView>) -> usize {
        let mut state = self.lock();
        let mut changed = 0;
        for (workload, mut view) in views {
            let sender = state
                .channels
                .entry(workload)
                .or_insert_with(|| watch::channel(None).0)
                .clone();
            let same = sender.borrow().as_deref().is_some_and(|old| {
                view.version = old.version;
                *old == view
            });
            if !same {
                state.version += 1;
                view.version = state.version;
                sender.send_replace(Some(Arc::new(view)));
                changed += 1;
            }
        }
        changed
    }

    /// Subscribes to the views of `workload` (`name.namespace`), which may not exist yet.
    pub(crate) fn subscribe(&self, workload: &str) -> watch::Receiver<Option<Arc<ProxyView>>> {
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
        let (va, vb) = (
            a.borrow().as_ref().unwrap().version,
            b.borrow().as_ref().unwrap().version,
        );
        assert_eq!(
            hub.publish(views("1", "2")),
            0,
            "identical views are not pushed"
        );
        assert_eq!(hub.publish(views("1", "3")), 1);
        assert_eq!(a.borrow().as_ref().unwrap().version, va);
        assert!(b.borrow().as_ref().unwrap().version > vb);
    }
}
