//! Where applied resources live: one `Store` trait, and the embedded file store that is the
//! default backend (atomic writes, revisions, watchers, all-or-nothing apply).
