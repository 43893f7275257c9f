use std::time::Duration;

use super::*;

const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n";
const NS: &str =
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n";

#[test]
fn apply_persists_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path()).unwrap();
        let applied = store.apply("a.yaml", &format!("{PA}---\n{NS}")).unwrap();
        assert_eq!(applied.revision, Revision(1));
        assert_eq!(applied.created.len(), 2);
        let again = store.apply("a.yaml", PA).unwrap();
        assert_eq!(
            again.revision,
            Revision(1),
            "re-applying the same thing changes nothing"
        );
    }
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.revision(), Revision(1));
    assert_eq!(store.list(Some(Kind::Namespace), None).unwrap().len(), 1);
    assert_eq!(store.list(None, Some("istio-system")).unwrap().len(), 1);
}

#[test]
fn an_invalid_stream_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    store.apply("a.yaml", PA).unwrap();
    let bad = format!("{NS}---\n{}", PA.replace("STRICT", "STRICTT"));
    let err = store.apply("b.yaml", &bad).unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(ref e) if e[0].to_string().contains("STRICTT")),
        "{err}"
    );
    assert_eq!(store.revision(), Revision(1));
    assert!(
        store.list(Some(Kind::Namespace), None).unwrap().is_empty(),
        "the valid Namespace was not applied either"
    );
    let twice = format!("{NS}---\n{NS}");
    assert!(matches!(
        store.apply("c.yaml", &twice),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn a_second_process_cannot_open_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = FileStore::open(dir.path()).unwrap();
    assert!(matches!(
        FileStore::open(dir.path()),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn watchers_see_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let rx = store.watch();
    store.apply("a.yaml", PA).unwrap();
    let key = store.list(None, None).unwrap()[0].resource.key();
    assert!(store.delete(&key).unwrap());
    assert!(!store.delete(&key).unwrap());
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [Revision(1), Revision(2)]
    );
    assert_eq!(
        store.wait_for_change(Revision(1), Duration::from_millis(1)),
        Revision(2)
    );
    assert_eq!(
        store.wait_for_change(Revision(2), Duration::from_millis(10)),
        Revision(2),
        "times out"
    );
}

#[test]
fn a_corrupt_state_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("state.json"), "{not json").unwrap();
    assert!(matches!(
        FileStore::open(dir.path()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn creation_time_is_stamped_once_and_kept_across_updates_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let created = |store: &FileStore| {
        store.list(Some(Kind::PeerAuthentication), None).unwrap()[0]
            .resource
            .metadata()
            .creation_timestamp
            .clone()
            .expect("stamped")
    };
    let first = {
        let store = FileStore::open(dir.path()).unwrap();
        store.apply("a.yaml", PA).unwrap();
        created(&store)
    };
    assert!(
        first.ends_with('Z') && first.len() == 20,
        "RFC 3339 seconds: {first}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(created(&store), first, "restart keeps it");
    let updated = store
        .apply("a.yaml", &PA.replace("STRICT", "PERMISSIVE"))
        .unwrap();
    assert_eq!(updated.updated.len(), 1);
    assert_eq!(
        created(&store),
        first,
        "an update keeps the original creation time"
    );
    let again = store
        .apply("a.yaml", &PA.replace("STRICT", "PERMISSIVE"))
        .unwrap();
    assert_eq!(
        again.unchanged.len(),
        1,
        "re-applying unchanged text is not an update"
    );
}

#[test]
fn several_files_apply_as_one_change_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let bad = PA.replace("STRICT", "STRICTT").replace("default", "other");
    let err = store
        .apply_files(&[("a.yaml".into(), NS.into()), ("b.yaml".into(), bad)])
        .unwrap_err();
    assert!(err.to_string().contains("nothing applied"), "{err}");
    assert_eq!(store.revision(), Revision(0));
    let applied = store
        .apply_files(&[("a.yaml".into(), NS.into()), ("b.yaml".into(), PA.into())])
        .unwrap();
    assert_eq!((applied.revision, applied.created.len()), (Revision(1), 2));
}
