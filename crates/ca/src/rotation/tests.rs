use meshward_identity::{
    AllowedPeers, Side, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain, verify_svid_chain,
};
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::UnixTime;

use super::*;
use crate::InitOptions;

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

fn state() -> RotationState {
    RotationState::new(
        vec!["old".into()],
        "new".into(),
        "old-key".into(),
        "new-key".into(),
        1_000,
    )
}

// === the state machine ===

#[test]
fn walks_the_four_stages_in_order_and_waits_at_each_gate() {
    let mut s = state();
    assert_eq!(s.phase, Phase::AddRoot);
    assert_eq!(s.phase.roots(), Roots::Both);
    assert_eq!(s.phase.signer(), Signer::Old);
    // A closed gate holds the phase.
    assert_eq!(s.advance(false, 2_000), None);
    assert_eq!(s.phase, Phase::AddRoot);
    // Stage 2 has no gate: an open stage-1 gate lands in stage 3.
    assert_eq!(s.advance(true, 3_000), Some(Phase::Reissue));
    assert_eq!(
        s.history.iter().map(|h| h.phase).collect::<Vec<_>>(),
        [Phase::AddRoot, Phase::SwitchSigner, Phase::Reissue]
    );
    assert_eq!(s.phase.signer(), Signer::New);
    assert!(s.phase.reissue());
    assert_eq!(s.signer_key(), "new-key");
    assert_eq!(s.root_fingerprints(), ["old", "new"]);
    assert_eq!(s.advance(false, 4_000), None);
    assert_eq!(s.advance(true, 5_000), Some(Phase::RemoveOld));
    assert_eq!(s.root_fingerprints(), ["new"]);
    assert_eq!(s.phase.stage(), Some(4));
    assert_eq!(s.advance(true, 6_000), Some(Phase::Complete));
    assert!(s.phase.is_terminal());
    assert_eq!(
        s.advance(true, 7_000),
        None,
        "a finished rotation stays finished"
    );
    assert_eq!(s.elapsed_ms(99_000), 5_000);
}

#[test]
fn abort_before_the_switch_only_removes_the_new_root() {
    let mut s = state();
    assert_eq!(s.abort(2_000), Ok(Phase::RemoveNew));
    assert_eq!(s.phase.roots(), Roots::Old);
    assert_eq!(s.phase.signer(), Signer::Old);
    assert_eq!(s.advance(true, 3_000), Some(Phase::Aborted));
    assert_eq!(s.abort(4_000), Err(RotationError::Finished(Phase::Aborted)));
}

#[test]
fn abort_after_the_switch_restores_the_old_root_before_signing_with_it() {
    for stop_at in [Phase::Reissue, Phase::RemoveOld] {
        let mut s = state();
        while s.phase != stop_at {
            s.advance(true, 2_000).unwrap();
        }
        assert_eq!(s.abort(3_000), Ok(Phase::RestoreOldRoot));
        // The old root is trusted again while the new CA still signs...
        assert_eq!(s.phase.roots(), Roots::Both);
        assert_eq!(s.phase.signer(), Signer::New);
        assert_eq!(
            s.abort(3_500),
            Err(RotationError::AlreadyAborting(Phase::RestoreOldRoot))
        );
        // ...then the old CA signs and everyone renews under it...
        assert_eq!(s.advance(true, 4_000), Some(Phase::RevertSigner));
        assert_eq!(s.phase.signer(), Signer::Old);
        assert!(s.phase.reissue());
        assert_eq!(s.signer_key(), "old-key");
        // ...then the new root goes.
        assert_eq!(s.advance(true, 5_000), Some(Phase::RemoveNew));
        assert_eq!(s.root_fingerprints(), ["old"]);
        assert_eq!(s.advance(true, 6_000), Some(Phase::Aborted));
    }
}

#[test]
fn a_completed_rotation_cannot_be_aborted() {
    let mut s = state();
    while !s.phase.is_terminal() {
        s.advance(true, 2_000);
    }
    assert_eq!(
        s.abort(3_000),
        Err(RotationError::Finished(Phase::Complete))
    );
}

#[test]
fn every_phase_trusts_the_roots_its_certificates_need() {
    // Whatever the phase, the bundle holds the root of the signer in force, and a phase that
    // re-issues trusts both roots (certificates of either signer are in use).
    for phase in [
        Phase::AddRoot,
        Phase::SwitchSigner,
        Phase::Reissue,
        Phase::RemoveOld,
        Phase::Complete,
        Phase::RestoreOldRoot,
        Phase::RevertSigner,
        Phase::RemoveNew,
        Phase::Aborted,
    ] {
        let needed = match phase.signer() {
            Signer::Old => Roots::Old,
            Signer::New => Roots::New,
        };
        assert!(
            phase.roots() == needed || phase.roots() == Roots::Both,
            "{phase}"
        );
        if phase.reissue() {
            assert_eq!(phase.roots(), Roots::Both, "{phase}");
        }
    }
}

// === the files ===

fn new_ca(dir: &Path, intermediate: bool) -> Authority {
    let mut options = InitOptions::new(td());
    if intermediate {
        options = options.with_intermediate();
    }
    Authority::init(dir, &options).unwrap()
}

fn csr() -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn bundles(roots: &[CertificateDer<'static>]) -> TrustBundleSet {
    TrustBundle::new(td(), roots.iter().cloned())
        .unwrap()
        .into()
}

fn verifies_under(svid: &crate::IssuedSvid, roots: &[CertificateDer<'static>]) -> bool {
    verify_svid_chain(
        &svid.chain,
        Side::Client,
        &bundles(roots),
        &AllowedPeers::any(),
        UnixTime::now(),
    )
    .is_ok()
}

fn id() -> SpiffeId {
    ID.parse().unwrap()
}

#[test]
fn a_full_rotation_keeps_every_chain_verifiable_and_swaps_the_ca() {
    for intermediate in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        let old = new_ca(&ca_dir, intermediate);
        let old_roots = old.trust_bundle().roots().to_vec();
        let before = old.sign(&csr(), &id(), None).unwrap();
        let files = RotationFiles::new(&ca_dir);
        let mut state = files
            .prepare(
                &old,
                &NewRoot::Generate {
                    ttl: DEFAULT_ROOT_TTL,
                },
                1,
            )
            .unwrap();
        files.save_state(&state).unwrap();
        assert_eq!(files.load_state().unwrap().as_ref(), Some(&state));

        // Stage 1: both roots handed out, the old CA signs.
        let ca = files.authority(&state, &td()).unwrap();
        assert_eq!(ca.trust_bundle().roots().len(), 2);
        assert_eq!(ca.signer_key_sha256(), state.old_signer);
        let new_root = ca.trust_bundle().roots()[1].clone();
        assert_ne!(new_root, old_roots[0]);

        // Stages 2 and 3: the new intermediate signs; its chains verify under either root.
        state.advance(true, 2).unwrap();
        let ca = files.authority(&state, &td()).unwrap();
        assert_eq!(ca.signer_key_sha256(), state.new_signer);
        let during = ca.sign(&csr(), &id(), None).unwrap();
        assert!(verifies_under(&during, &old_roots), "old root only");
        assert!(
            verifies_under(&during, std::slice::from_ref(&new_root)),
            "new root only"
        );
        assert_eq!(
            spki_sha256(during.chain[1].as_ref()).unwrap(),
            state.new_signer
        );

        // Stage 4: only the new root; chains issued during stage 3 still verify.
        state.advance(true, 3).unwrap();
        assert_eq!(state.phase, Phase::RemoveOld);
        let ca = files.authority(&state, &td()).unwrap();
        assert_eq!(ca.trust_bundle().roots(), std::slice::from_ref(&new_root));
        let after = ca.sign(&csr(), &id(), None).unwrap();
        assert!(verifies_under(&after, std::slice::from_ref(&new_root)));
        assert!(verifies_under(&during, std::slice::from_ref(&new_root)));
        assert!(!verifies_under(&before, std::slice::from_ref(&new_root)));

        // Complete: the new CA is the CA, on disk.
        state.advance(true, 4).unwrap();
        assert_eq!(state.phase, Phase::Complete);
        files.save_state(&state).unwrap();
        files.complete().unwrap();
        assert!(!files.next_dir().exists());
        let loaded = Authority::load(&ca_dir, None).unwrap();
        assert_eq!(
            loaded.trust_bundle().roots(),
            std::slice::from_ref(&new_root)
        );
        assert_eq!(loaded.signer_key_sha256(), state.new_signer);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            2,
            "the CA and the state file, nothing else"
        );
    }
}

#[test]
fn resumes_from_the_state_file_and_finishes_an_interrupted_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let old = new_ca(&ca_dir, false);
    let files = RotationFiles::new(&ca_dir);
    let mut state = files
        .prepare(
            &old,
            &NewRoot::Generate {
                ttl: DEFAULT_ROOT_TTL,
            },
            1,
        )
        .unwrap();
    state.advance(true, 2).unwrap();
    files.save_state(&state).unwrap();

    // A restarted control plane reads the same phase and builds the same signer.
    let resumed = RotationFiles::new(&ca_dir);
    resumed.recover().unwrap();
    let again = resumed.load_state().unwrap().unwrap();
    assert_eq!(again, state);
    let ca = resumed.authority(&again, &td()).unwrap();
    assert_eq!(ca.signer_key_sha256(), state.new_signer);

    // A crash half-way through the swap: the old CA moved away, the new one not yet in place.
    while !state.phase.is_terminal() {
        state.advance(true, 3);
    }
    files.save_state(&state).unwrap();
    fs::rename(&ca_dir, tmp.path().join("ca.retired")).unwrap();
    RotationFiles::new(&ca_dir).recover().unwrap();
    let loaded = Authority::load(&ca_dir, None).unwrap();
    assert_eq!(loaded.signer_key_sha256(), state.new_signer);
    assert!(!tmp.path().join("ca.retired").exists());
    assert!(!tmp.path().join("ca.next").exists());
}

#[test]
fn an_aborted_rotation_leaves_the_old_ca_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let old = new_ca(&ca_dir, true);
    let old_signer = old.signer_key_sha256();
    let files = RotationFiles::new(&ca_dir);
    let mut state = files
        .prepare(
            &old,
            &NewRoot::Generate {
                ttl: DEFAULT_ROOT_TTL,
            },
            1,
        )
        .unwrap();
    state.advance(true, 2).unwrap();
    state.abort(3).unwrap();
    let ca = files.authority(&state, &td()).unwrap();
    // Restoring the old root: both roots, still the new signer.
    assert_eq!(ca.trust_bundle().roots().len(), 2);
    assert_eq!(ca.signer_key_sha256(), state.new_signer);
    state.advance(true, 4).unwrap();
    let ca = files.authority(&state, &td()).unwrap();
    assert_eq!(ca.signer_key_sha256(), old_signer);
    state.advance(true, 5).unwrap();
    state.advance(true, 6).unwrap();
    assert_eq!(state.phase, Phase::Aborted);
    files.save_state(&state).unwrap();
    files.discard().unwrap();
    files.recover().unwrap();
    let loaded = Authority::load(&ca_dir, None).unwrap();
    assert_eq!(loaded.signer_key_sha256(), old_signer);
    assert_eq!(loaded.trust_bundle().roots(), old.trust_bundle().roots());
    assert!(!files.next_dir().exists());
}

#[test]
fn a_leftover_staging_directory_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let old = new_ca(&ca_dir, false);
    let files = RotationFiles::new(&ca_dir);
    // A crash after the new CA was written but before the state was saved.
    files
        .prepare(
            &old,
            &NewRoot::Generate {
                ttl: DEFAULT_ROOT_TTL,
            },
            1,
        )
        .unwrap();
    assert!(files.next_dir().exists());
    files.recover().unwrap();
    assert!(!files.next_dir().exists());
    assert!(files.load_state().unwrap().is_none());
}

#[test]
fn an_operator_root_is_checked_before_use() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let old = new_ca(&ca_dir, false);
    let other = new_ca(&tmp.path().join("other"), false);
    let files = RotationFiles::new(&ca_dir);
    let cert = tmp.path().join("other/ca-cert.pem");
    let good_key = tmp.path().join("other/ca-key.pem");
    let wrong_key = ca_dir.join("ca-key.pem");
    let err = files
        .prepare(
            &old,
            &NewRoot::Provided {
                cert: cert.clone(),
                key: wrong_key,
            },
            1,
        )
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!files.next_dir().exists());
    let state = files
        .prepare(
            &old,
            &NewRoot::Provided {
                cert,
                key: good_key,
            },
            1,
        )
        .unwrap();
    assert_eq!(
        state.new_root,
        fingerprint_sha256(other.root().unwrap().as_ref())
    );
    // The operator's root key is not copied next to the CA.
    assert!(!files.next_dir().join(ROOT_KEY).exists());
    let same = files
        .prepare(
            &old,
            &NewRoot::Provided {
                cert: ca_dir.join("ca-cert.pem"),
                key: ca_dir.join("ca-key.pem"),
            },
            1,
        )
        .unwrap_err();
    assert!(same.to_string().contains("already a root"), "{same}");
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let files = RotationFiles::new(&ca_dir);
    fs::write(files.state_path(), b"{not json").unwrap();
    let err = files.load_state().unwrap_err();
    assert!(err.to_string().contains("ca.rotation.json"), "{err}");
}
