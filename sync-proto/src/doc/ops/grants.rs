//! Kiosk grants: pairings pre-approved by central, redeemed by a hub.

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc as _, ScalarValue, Value};

use crate::doc::schema::{Kiosk, KioskGrant, Orientation, VenueDoc};
use crate::ids::{GrantId, KioskId};
use crate::kiosk_code::KioskCodeHash;

use super::create::schema_version;
use super::kiosks::{insert_kiosk, validate_kiosk_names};
use super::navigate::{get_str, map_at, playlist_obj};
use super::{DocOpError, MAX_OPEN_KIOSK_GRANTS};

/// What [`redeem_kiosk_grant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// The kiosk was added and the grant marked used by it.
    Redeemed,
    /// The grant was already used by this same kiosk (a retry): nothing was written.
    AlreadyRedeemed,
}

/// Adds a kiosk grant, made by central: the hash of a fresh code and what the kiosk will
/// be (name, group, playlist). Refused if the name or group is invalid, the playlist is
/// not in the document, the expiry is not after both `created_at_ms` and `now_ms`, the
/// grant is already marked used, the id is taken, or [`MAX_OPEN_KIOSK_GRANTS`] grants are
/// open at `now_ms`.
///
/// Creates the `kiosk_grants` map in a document made before grants existed. Only central
/// may call this: the map must have a single creator (see the module docs on why two
/// independently created objects under one key lose one of them).
pub fn add_kiosk_grant(
    doc: &mut AutoCommit,
    id: GrantId,
    grant: &KioskGrant,
    now_ms: i64,
) -> Result<(), DocOpError> {
    schema_version(doc)?;
    validate_kiosk_names(&grant.name, grant.group.as_deref())?;
    if grant.expires_at_ms <= grant.created_at_ms || grant.expires_at_ms <= now_ms {
        return Err(DocOpError::InvalidGrant(
            "it must expire after it is created, in the future".into(),
        ));
    }
    if grant.consumed_by.is_some() || grant.consumed_at_ms.is_some() {
        return Err(DocOpError::InvalidGrant(
            "a new grant cannot be already used".into(),
        ));
    }
    if let Some(p) = grant.playlist {
        playlist_obj(doc, p)?;
    }
    let key = id.to_string();
    let grants = match map_at(doc, &ROOT, "kiosk_grants")? {
        Some(grants) => {
            if map_at(doc, &grants, &key)?.is_some() {
                return Err(DocOpError::GrantExists(id));
            }
            if open_grants(doc, &grants, now_ms)? >= MAX_OPEN_KIOSK_GRANTS {
                return Err(DocOpError::TooManyGrants {
                    max: MAX_OPEN_KIOSK_GRANTS,
                });
            }
            grants
        }
        None => doc.put_object(ROOT, "kiosk_grants", ObjType::Map)?,
    };
    autosurgeon::reconcile_prop(doc, &grants, key.as_str(), grant)?;
    Ok(())
}

/// The grant whose code has this hash, if any, in a read venue document.
pub fn find_kiosk_grant<'a>(
    venue: &'a VenueDoc,
    hash: &KioskCodeHash,
) -> Option<(GrantId, &'a KioskGrant)> {
    venue
        .kiosk_grants
        .iter()
        .find(|(_, g)| g.code_hash == *hash)
        .map(|(id, g)| (*id, g))
}

/// Redeems a grant for `kiosk` at `now_ms` (the redeeming hub's clock): adds the kiosk with
/// the grant's name, group and playlist (a playlist no longer in the document is left
/// out) and marks the grant used by it, in one transaction so that the two land in one
/// change. Redeeming again for the same kiosk is a no-op ([`Redemption::AlreadyRedeemed`]),
/// so a retried pairing never adds a second kiosk.
///
/// Refused when the grant is absent ([`DocOpError::GrantNotFound`]), used by another kiosk
/// ([`DocOpError::GrantUsed`]), expired ([`DocOpError::GrantExpired`]), or the kiosk id is
/// taken.
pub fn redeem_kiosk_grant(
    doc: &mut AutoCommit,
    id: GrantId,
    kiosk: KioskId,
    now_ms: i64,
) -> Result<Redemption, DocOpError> {
    schema_version(doc)?;
    let key = id.to_string();
    let grants = map_at(doc, &ROOT, "kiosk_grants")?.ok_or(DocOpError::GrantNotFound(id))?;
    let grant_obj = map_at(doc, &grants, &key)?.ok_or(DocOpError::GrantNotFound(id))?;
    let grant: KioskGrant = autosurgeon::hydrate_prop(doc, &grants, key.as_str())?;
    match grant.consumed_by {
        Some(by) if by == kiosk => return Ok(Redemption::AlreadyRedeemed),
        Some(by) => {
            return Err(DocOpError::GrantUsed {
                grant: id,
                kiosk: by,
            });
        }
        None => {}
    }
    if now_ms >= grant.expires_at_ms {
        return Err(DocOpError::GrantExpired {
            grant: id,
            expires_at_ms: grant.expires_at_ms,
        });
    }
    let playlist = match grant.playlist {
        Some(p) => playlist_obj(doc, p).ok().map(|_| p),
        None => None,
    };
    let new_kiosk = Kiosk {
        name: grant.name,
        group: grant.group,
        orientation: Orientation::default(),
        playlist,
    };
    // The name and group were validated by central, and are again here, as the document
    // came over the network.
    insert_kiosk(doc, kiosk, &new_kiosk)?;
    autosurgeon::reconcile_prop(doc, &grant_obj, "consumed_by", Some(kiosk))?;
    autosurgeon::reconcile_prop(doc, &grant_obj, "consumed_at_ms", Some(now_ms))?;
    Ok(Redemption::Redeemed)
}

/// Removes a grant: revokes it if unused, forgets it if used (the kiosk it paired stays).
/// A redemption made concurrently elsewhere loses its mark on the grant but keeps its
/// kiosk (remove beats edit).
pub fn remove_kiosk_grant(doc: &mut AutoCommit, id: GrantId) -> Result<(), DocOpError> {
    schema_version(doc)?;
    let key = id.to_string();
    let grants = map_at(doc, &ROOT, "kiosk_grants")?.ok_or(DocOpError::GrantNotFound(id))?;
    if map_at(doc, &grants, &key)?.is_none() {
        return Err(DocOpError::GrantNotFound(id));
    }
    doc.delete(&grants, key.as_str())?;
    Ok(())
}

/// How many grants of the `kiosk_grants` map are open at `now_ms`, reading only the two
/// fields that decide it.
fn open_grants(doc: &AutoCommit, grants: &ObjId, now_ms: i64) -> Result<usize, DocOpError> {
    let mut open = 0;
    for key in doc.keys(grants).collect::<Vec<_>>() {
        let Some(grant) = map_at(doc, grants, &key)? else {
            continue;
        };
        // A used grant's `consumed_by` holds the kiosk id as text; an unused one's is null.
        let unused = get_str(doc, &grant, "consumed_by")?.is_none();
        let expires = match doc.get(&grant, "expires_at_ms")? {
            Some((Value::Scalar(v), _)) => match v.as_ref() {
                ScalarValue::Int(i) => *i,
                ScalarValue::Uint(u) => i64::try_from(*u).unwrap_or(i64::MAX),
                _ => 0,
            },
            _ => 0,
        };
        if unused && now_ms < expires {
            open += 1;
        }
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    fn gid(n: u8) -> GrantId {
        GrantId::from_bytes([n; 16])
    }

    /// A grant for "Bar screen" made at 1,000 ms, expiring at 10,000 ms.
    fn grant(code: u8) -> KioskGrant {
        KioskGrant {
            code_hash: crate::kiosk_code::KioskCode::from_bytes([code; 10]).hash(),
            name: "Bar screen".into(),
            group: None,
            playlist: None,
            created_at_ms: 1_000,
            expires_at_ms: 10_000,
            consumed_by: None,
            consumed_at_ms: None,
        }
    }

    #[test]
    fn grants_are_validated_before_anything_is_written() {
        let mut doc = venue_with_playlist();
        let g = |f: &dyn Fn(&mut KioskGrant)| {
            let mut g = grant(1);
            f(&mut g);
            g
        };
        let cases: Vec<(KioskGrant, i64, &str)> = vec![
            (g(&|g| g.name = String::new()), 2_000, "kiosk name"),
            (g(&|g| g.name = "x".repeat(101)), 2_000, "kiosk name"),
            (g(&|g| g.group = Some("a\nb".into())), 2_000, "group name"),
            (g(&|g| g.playlist = Some(pid(9))), 2_000, "playlist"),
            (g(&|g| g.expires_at_ms = 1_000), 500, "expire"),
            (g(&|_| {}), 10_000, "expire"),
            (g(&|g| g.consumed_by = Some(kid(1))), 2_000, "already used"),
            (g(&|g| g.consumed_at_ms = Some(1)), 2_000, "already used"),
        ];
        for (bad, now, says) in cases {
            let err = add_kiosk_grant(&mut doc, gid(1), &bad, now).unwrap_err();
            assert!(err.to_string().contains(says), "{says}: {err}");
            assert_eq!(pending(&doc), 0, "{says}: nothing written");
        }
        let mut good = grant(1);
        good.group = Some("bar".into());
        good.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(1), &good, 2_000).unwrap();
        doc.commit();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(1), &grant(2), 2_000),
            Err(DocOpError::GrantExists(_))
        ));
        let v = load_venue(&doc).unwrap();
        assert_eq!(v.kiosk_grants[&gid(1)], good);
        assert!(v.kiosk_grants[&gid(1)].is_open(9_999));
        assert!(!v.kiosk_grants[&gid(1)].is_open(10_000));
        let hash = crate::kiosk_code::KioskCode::from_bytes([1; 10]).hash();
        assert_eq!(find_kiosk_grant(&v, &hash).map(|(id, _)| id), Some(gid(1)));
        let other = crate::kiosk_code::KioskCode::from_bytes([2; 10]).hash();
        assert!(find_kiosk_grant(&v, &other).is_none());
    }

    #[test]
    fn open_grants_are_bounded_but_used_and_expired_ones_do_not_count() {
        let mut doc = venue();
        for i in 0..MAX_OPEN_KIOSK_GRANTS {
            let id = GrantId::from_bytes((i as u128).to_be_bytes());
            add_kiosk_grant(&mut doc, id, &grant(1), 2_000).unwrap();
        }
        doc.commit();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(255), &grant(1), 2_000),
            Err(DocOpError::TooManyGrants { .. })
        ));
        let first = GrantId::from_bytes(0u128.to_be_bytes());
        redeem_kiosk_grant(&mut doc, first, kid(1), 3_000).unwrap();
        add_kiosk_grant(&mut doc, gid(255), &grant(1), 3_000).unwrap();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(254), &grant(1), 3_000),
            Err(DocOpError::TooManyGrants { .. })
        ));
        // Once they have expired there is room again.
        let mut later = grant(1);
        later.expires_at_ms = 20_000;
        add_kiosk_grant(&mut doc, gid(254), &later, 10_000).unwrap();
    }

    #[test]
    fn redeeming_adds_the_kiosk_and_marks_the_grant_in_one_change() {
        let mut doc = venue_with_playlist();
        let mut g = grant(1);
        g.group = Some("bar".into());
        g.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(1), &g, 2_000).unwrap();
        doc.commit();
        assert_eq!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(7), 5_000).unwrap(),
            Redemption::Redeemed
        );
        doc.commit();
        let v = load_venue(&doc).unwrap();
        assert_eq!(
            v.kiosks[&kid(7)],
            Kiosk {
                name: "Bar screen".into(),
                group: Some("bar".into()),
                orientation: Orientation::Landscape,
                playlist: Some(pid(1)),
            }
        );
        let used = &v.kiosk_grants[&gid(1)];
        assert_eq!(
            (used.consumed_by, used.consumed_at_ms),
            (Some(kid(7)), Some(5_000))
        );
        assert!(!used.is_open(5_000));
        // A retry for the same kiosk writes nothing, even after the expiry.
        assert_eq!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(7), 50_000).unwrap(),
            Redemption::AlreadyRedeemed
        );
        assert_eq!(pending(&doc), 0);
        // Another kiosk is refused, naming the one that used it.
        let err = redeem_kiosk_grant(&mut doc, gid(1), kid(8), 5_000).unwrap_err();
        assert!(
            matches!(err, DocOpError::GrantUsed { kiosk, .. } if kiosk == kid(7)),
            "{err}"
        );
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(8), 5_000),
            Err(DocOpError::GrantNotFound(_))
        ));
        // Expired: refused, and nothing written.
        add_kiosk_grant(&mut doc, gid(2), &grant(2), 2_000).unwrap();
        doc.commit();
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(8), 10_000),
            Err(DocOpError::GrantExpired {
                expires_at_ms: 10_000,
                ..
            })
        ));
        // A kiosk id already in the document is refused.
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(7), 9_000),
            Err(DocOpError::KioskExists(_))
        ));
        assert_eq!(pending(&doc), 0);
        // A playlist removed since the grant was made is left out, not an error.
        let mut g3 = grant(3);
        g3.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(3), &g3, 2_000).unwrap();
        remove_playlist(&mut doc, pid(1)).unwrap();
        redeem_kiosk_grant(&mut doc, gid(3), kid(9), 3_000).unwrap();
        assert_eq!(load_venue(&doc).unwrap().kiosks[&kid(9)].playlist, None);
    }

    #[test]
    fn removing_a_grant_revokes_it_and_leaves_its_kiosk() {
        let mut doc = venue();
        add_kiosk_grant(&mut doc, gid(1), &grant(1), 2_000).unwrap();
        add_kiosk_grant(&mut doc, gid(2), &grant(2), 2_000).unwrap();
        redeem_kiosk_grant(&mut doc, gid(2), kid(2), 3_000).unwrap();
        remove_kiosk_grant(&mut doc, gid(1)).unwrap();
        remove_kiosk_grant(&mut doc, gid(2)).unwrap();
        assert!(matches!(
            remove_kiosk_grant(&mut doc, gid(1)),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(1), 3_000),
            Err(DocOpError::GrantNotFound(_))
        ));
        let v = load_venue(&doc).unwrap();
        assert!(v.kiosk_grants.is_empty());
        assert!(v.kiosks.contains_key(&kid(2)));
    }

    /// A venue document as made before grants existed: no `kiosk_grants` map.
    fn venue_without_grants() -> AutoCommit {
        let mut doc = venue();
        doc.delete(ROOT, "kiosk_grants").unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn a_document_from_before_grants_reads_and_gets_the_map_with_the_first_grant() {
        let mut doc = venue_without_grants();
        assert!(load_venue(&doc).unwrap().kiosk_grants.is_empty());
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(1), 0),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert!(matches!(
            remove_kiosk_grant(&mut doc, gid(1)),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert_eq!(pending(&doc), 0);
        add_kiosk_grant(&mut doc, gid(1), &grant(1), 2_000).unwrap();
        assert_eq!(load_venue(&doc).unwrap().kiosk_grants.len(), 1);
    }

    #[test]
    fn a_grant_made_at_central_reaches_the_hub_and_its_redemption_comes_back() {
        // The hub's replica dates from before grants existed.
        let mut central = venue_without_grants();
        let mut hub = fork(&mut central, 2);
        add_kiosk_grant(&mut central, gid(1), &grant(1), 2_000).unwrap();
        central.commit();
        hub.merge(&mut central).unwrap();
        assert_eq!(load_venue(&hub).unwrap().kiosk_grants[&gid(1)], grant(1));
        // The hub redeems while central makes another grant: both survive the merge.
        redeem_kiosk_grant(&mut hub, gid(1), kid(1), 3_000).unwrap();
        hub.commit();
        add_kiosk_grant(&mut central, gid(2), &grant(2), 3_000).unwrap();
        central.commit();
        central.merge(&mut hub).unwrap();
        hub.merge(&mut central).unwrap();
        let v = load_venue(&central).unwrap();
        assert_eq!(v, load_venue(&hub).unwrap());
        assert_eq!(v.kiosk_grants[&gid(1)].consumed_by, Some(kid(1)));
        assert_eq!(v.kiosks[&kid(1)].name, "Bar screen");
        assert!(v.kiosk_grants[&gid(2)].is_open(3_000));
    }

    #[test]
    fn a_revocation_beats_a_concurrent_redemption_but_not_its_kiosk() {
        let mut central = venue();
        add_kiosk_grant(&mut central, gid(1), &grant(1), 2_000).unwrap();
        central.commit();
        let mut hub = fork(&mut central, 2);
        remove_kiosk_grant(&mut central, gid(1)).unwrap();
        central.commit();
        redeem_kiosk_grant(&mut hub, gid(1), kid(1), 3_000).unwrap();
        hub.commit();
        central.merge(&mut hub).unwrap();
        hub.merge(&mut central).unwrap();
        let v = load_venue(&central).unwrap();
        assert_eq!(v, load_venue(&hub).unwrap());
        assert!(v.kiosk_grants.is_empty());
        assert!(v.kiosks.contains_key(&kid(1)));
    }

    #[test]
    fn two_replicas_redeeming_one_grant_while_apart_keep_both_kiosks_and_one_mark() {
        let mut origin = venue();
        add_kiosk_grant(&mut origin, gid(1), &grant(1), 2_000).unwrap();
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        redeem_kiosk_grant(&mut a, gid(1), kid(1), 3_000).unwrap();
        redeem_kiosk_grant(&mut b, gid(1), kid(2), 4_000).unwrap();
        a.commit();
        b.commit();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let v = load_venue(&a).unwrap();
        assert_eq!(v, load_venue(&b).unwrap());
        assert!(v.kiosks.contains_key(&kid(1)) && v.kiosks.contains_key(&kid(2)));
        let used = &v.kiosk_grants[&gid(1)];
        assert!(
            [Some(kid(1)), Some(kid(2))].contains(&used.consumed_by),
            "{used:?}"
        );
        assert!([Some(3_000), Some(4_000)].contains(&used.consumed_at_ms));
        // Either way, neither replica redeems it a third time.
        assert!(matches!(
            redeem_kiosk_grant(&mut a, gid(1), kid(3), 5_000),
            Err(DocOpError::GrantUsed { .. })
        ));
    }
}
