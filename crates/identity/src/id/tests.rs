use rstest::rstest;

use super::*;

#[rstest]
#[case::istio(
    "spiffe://cluster.local/ns/default/sa/sleep",
    "cluster.local",
    "/ns/default/sa/sleep"
)]
#[case::no_path("spiffe://example.org", "example.org", "")]
#[case::td_charset("spiffe://a-b_c.9/x", "a-b_c.9", "/x")]
#[case::path_charset("spiffe://td/A.b-c_D/9", "td", "/A.b-c_D/9")]
#[case::dots_inside_segment("spiffe://td/a..b/.c", "td", "/a..b/.c")]
fn parses_valid_ids(#[case] input: &str, #[case] td: &str, #[case] path: &str) {
    let id: SpiffeId = input.parse().unwrap();
    assert_eq!(id.trust_domain().as_str(), td);
    assert_eq!(id.path(), path);
    assert_eq!(id.to_string(), input);
}

#[rstest]
#[case::empty("", IdError::Empty)]
#[case::upper_scheme("SPIFFE://td/a", IdError::WrongScheme)]
#[case::other_scheme("https://td/a", IdError::WrongScheme)]
#[case::no_slashes("spiffe:td/a", IdError::WrongScheme)]
#[case::no_td("spiffe:///ns/a", IdError::MissingTrustDomain)]
#[case::only_scheme("spiffe://", IdError::MissingTrustDomain)]
#[case::upper_td("spiffe://Cluster.local/ns/a", IdError::TrustDomainChar { ch: 'C' })]
#[case::port("spiffe://td:8080/a", IdError::TrustDomainChar { ch: ':' })]
#[case::userinfo("spiffe://user@td/a", IdError::TrustDomainChar { ch: '@' })]
#[case::query("spiffe://td/a?x=1", IdError::PathChar { ch: '?' })]
#[case::fragment("spiffe://td/a#f", IdError::PathChar { ch: '#' })]
#[case::percent("spiffe://td/a%20b", IdError::PathChar { ch: '%' })]
#[case::query_no_path("spiffe://td?x", IdError::TrustDomainChar { ch: '?' })]
#[case::space("spiffe://td/a b", IdError::PathChar { ch: ' ' })]
#[case::trailing_slash("spiffe://td/a/", IdError::TrailingSlash)]
#[case::root_slash("spiffe://td/", IdError::TrailingSlash)]
#[case::empty_segment("spiffe://td//a", IdError::EmptySegment)]
#[case::dot("spiffe://td/./a", IdError::DotSegment { segment: "." })]
#[case::dotdot("spiffe://td/a/..", IdError::DotSegment { segment: ".." })]
fn rejects_invalid_ids(#[case] input: &str, #[case] expected: IdError) {
    assert_eq!(input.parse::<SpiffeId>(), Err(expected));
}

#[test]
fn enforces_length_limits() {
    let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    assert!(format!("spiffe://{td}/x").parse::<SpiffeId>().is_ok());
    let long_td = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    assert_eq!(
        format!("spiffe://{long_td}").parse::<SpiffeId>(),
        Err(IdError::TrustDomainTooLong { len: 256 })
    );
    let at_limit = format!("spiffe://td{}b", "/a".repeat(1018));
    assert_eq!(at_limit.len(), MAX_ID_LEN);
    assert!(at_limit.parse::<SpiffeId>().is_ok());
    let over = format!("{at_limit}c");
    assert_eq!(
        over.parse::<SpiffeId>(),
        Err(IdError::TooLong { len: over.len() })
    );
}

#[rstest]
#[case::istio("spiffe://td/ns/default/sa/sleep", Some(("default", "sleep")))]
#[case::too_long("spiffe://td/ns/default/sa/sleep/x", None)]
#[case::too_short("spiffe://td/ns/default/sa", None)]
#[case::wrong_keyword("spiffe://td/namespace/default/sa/sleep", None)]
#[case::swapped("spiffe://td/sa/sleep/ns/default", None)]
#[case::no_path("spiffe://td", None)]
fn istio_accessors(#[case] input: &str, #[case] expected: Option<(&str, &str)>) {
    let id: SpiffeId = input.parse().unwrap();
    assert_eq!(id.namespace(), expected.map(|(ns, _)| ns));
    assert_eq!(id.service_account(), expected.map(|(_, sa)| sa));
}

#[test]
fn istio_constructor_and_principal_round_trip() {
    let td = TrustDomain::new("cluster.local").unwrap();
    let id = SpiffeId::istio(&td, "default", "sleep").unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
    assert_eq!(id.to_principal(), "cluster.local/ns/default/sa/sleep");
    assert_eq!(SpiffeId::from_principal(&id.to_principal()).unwrap(), id);
    assert_eq!(
        SpiffeId::istio(&td, "de/fault", "sleep"),
        Err(IdError::PathChar { ch: '/' })
    );
    assert_eq!(
        SpiffeId::istio(&td, "", "sleep"),
        Err(IdError::EmptySegment)
    );
}

#[test]
fn principal_rejects_scheme_and_bad_input() {
    assert_eq!(
        SpiffeId::from_principal("spiffe://td/ns/a/sa/b"),
        Err(IdError::PrincipalHasScheme)
    );
    assert_eq!(
        SpiffeId::from_principal("TD/ns/a/sa/b"),
        Err(IdError::TrustDomainChar { ch: 'T' })
    );
}

#[rstest]
#[case::good("cluster.local", None)]
#[case::scheme("spiffe://cluster.local", Some(IdError::TrustDomainHasScheme))]
#[case::empty("", Some(IdError::MissingTrustDomain))]
#[case::slash("td/x", Some(IdError::TrustDomainChar { ch: '/' }))]
fn trust_domain_parsing(#[case] input: &str, #[case] error: Option<IdError>) {
    assert_eq!(TrustDomain::new(input).err(), error);
}

#[test]
fn errors_explain_common_mistakes() {
    let err = "spiffe://td:443/a".parse::<SpiffeId>().unwrap_err();
    assert!(err.to_string().contains("port"), "{err}");
    let err = "spiffe://Td/a".parse::<SpiffeId>().unwrap_err();
    assert!(err.to_string().contains("lower case"), "{err}");
}

proptest::proptest! {
    /// Parsing never panics, and whatever parses prints back exactly as given (one spelling).
    #[test]
    fn parse_is_total_and_canonical(input in "spiffe://[a-zA-Z0-9._:@-]{0,12}(/[a-zA-Z0-9._%?#-]{0,6}){0,4}/?") {
        if let Ok(id) = input.parse::<SpiffeId>() {
            proptest::prop_assert_eq!(id.to_string(), input.clone());
            proptest::prop_assert_eq!(SpiffeId::from_principal(&id.to_principal()), Ok(id));
        }
    }

    /// Any Istio identity built from valid parts round-trips through text and accessors.
    #[test]
    fn istio_ids_round_trip(td in "[a-z0-9][a-z0-9.-]{0,20}", ns in "[a-z0-9-]{1,20}", sa in "[a-z0-9-]{1,20}") {
        let td = TrustDomain::new(&td).unwrap();
        let id = SpiffeId::istio(&td, &ns, &sa).unwrap();
        let back: SpiffeId = id.to_string().parse().unwrap();
        proptest::prop_assert_eq!(back.namespace(), Some(ns.as_str()));
        proptest::prop_assert_eq!(back.service_account(), Some(sa.as_str()));
        proptest::prop_assert_eq!(back, id);
    }
}
