//! Item positions: placing an item among its playlist's items by fractional index.

use automerge::{AutoCommit, ObjId, ReadDoc as _};
use fractional_index::FractionalIndex;

use crate::ids::{ItemId, PlaylistId};

use super::navigate::{get_str, map_at};
use super::{DocOpError, Placement, clip};

/// An item's id and stored position, as read for placing another item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) id: ItemId,
    pub(super) position: String,
}

/// The items of a playlist in order (by position text, then id), reading only positions.
pub(super) fn read_slots(
    doc: &AutoCommit,
    items: &ObjId,
    playlist: PlaylistId,
) -> Result<Vec<Slot>, DocOpError> {
    let mut slots = Vec::new();
    for key in doc.keys(items).collect::<Vec<_>>() {
        let id: ItemId = key.parse().map_err(|_| {
            DocOpError::Malformed(format!(
                "playlist {playlist} has an item key {key:?} that is not an id"
            ))
        })?;
        let obj = map_at(doc, items, &key)?.ok_or_else(|| {
            DocOpError::Malformed(format!("item {id} of playlist {playlist} is not a map"))
        })?;
        let position = get_str(doc, &obj, "position")?.unwrap_or_default();
        slots.push(Slot { id, position });
    }
    slots.sort_by(|a, b| (a.position.as_str(), a.id).cmp(&(b.position.as_str(), b.id)));
    Ok(slots)
}

/// The position for a placed item, plus new positions for items that must move with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    pub(super) position: String,
    pub(super) respaced: Vec<(ItemId, String)>,
}

/// Parses a stored position, rejecting anything `FractionalIndex::from_string` could
/// mis-read: it slices the text two bytes at a time, which panics inside a multi-byte
/// character and silently drops an odd last digit.
pub(super) fn parse_position(text: &str) -> Option<FractionalIndex> {
    let hex = text.len().is_multiple_of(2)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex {
        FractionalIndex::from_string(text).ok()
    } else {
        None
    }
}

/// Computes where an item goes among `slots` (sorted, not containing the item).
///
/// For `After(anchor)` the new position lies strictly between the anchor and the first item
/// whose position is greater than the anchor's. Items tied with the anchor (same position,
/// larger id, from concurrent inserts at one spot) would otherwise stay between the anchor
/// and the new item, so they get fresh increasing positions after it, in their old order.
pub(super) fn place(
    playlist: PlaylistId,
    slots: &[Slot],
    at: Placement,
) -> Result<Placed, DocOpError> {
    let parse = |s: &Slot| {
        parse_position(&s.position).ok_or_else(|| DocOpError::CorruptPosition {
            playlist,
            item: s.id,
            position: clip(&s.position),
        })
    };
    let alone = |position: FractionalIndex| Placed {
        position: position.to_string(),
        respaced: Vec::new(),
    };
    match at {
        Placement::Front => match slots.first() {
            None => Ok(alone(FractionalIndex::default())),
            Some(first) => Ok(alone(FractionalIndex::new_before(&parse(first)?))),
        },
        Placement::End => match slots.last() {
            None => Ok(alone(FractionalIndex::default())),
            Some(last) => Ok(alone(FractionalIndex::new_after(&parse(last)?))),
        },
        Placement::After(anchor) => {
            let idx =
                slots
                    .iter()
                    .position(|s| s.id == anchor)
                    .ok_or(DocOpError::ItemNotFound {
                        playlist,
                        item: anchor,
                    })?;
            let lower = parse(&slots[idx])?;
            let rest = &slots[idx + 1..];
            let tied = rest
                .iter()
                .take_while(|s| s.position == slots[idx].position)
                .count();
            let upper = rest.get(tied).map(parse).transpose()?;
            let next = |after: &FractionalIndex| {
                FractionalIndex::new(Some(after), upper.as_ref()).ok_or_else(|| {
                    // Sorted, distinct, valid positions always have room between them; this
                    // is reachable only if the sort and the parse disagree (corruption).
                    DocOpError::Malformed(format!(
                        "playlist {playlist}: no position fits after item {anchor}"
                    ))
                })
            };
            let position = next(&lower)?;
            let mut prev = position.clone();
            let mut respaced = Vec::with_capacity(tied);
            for s in &rest[..tied] {
                let p = next(&prev)?;
                respaced.push((s.id, p.to_string()));
                prev = p;
            }
            Ok(Placed {
                position: position.to_string(),
                respaced,
            })
        }
    }
}

pub(super) fn write_respaced(
    doc: &mut AutoCommit,
    items: &ObjId,
    respaced: &[(ItemId, String)],
) -> Result<(), DocOpError> {
    for (id, position) in respaced {
        // `place` only respaces items it read from this same map a moment ago.
        if let Some(obj) = map_at(doc, items, &id.to_string())? {
            autosurgeon::reconcile_prop(doc, &obj, "position", position.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::navigate::items_obj;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn concurrent_inserts_at_one_spot_tie_on_position_and_order_by_id() {
        let mut origin = venue_with_playlist();
        insert(&mut origin, 1, Placement::End);
        insert(&mut origin, 9, Placement::End);
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        insert(&mut a, 5, Placement::After(iid(1)));
        insert(&mut b, 3, Placement::After(iid(1)));
        a.merge(&mut b).unwrap();
        let v = load_venue(&a).unwrap();
        let items = &v.playlists[&pid(1)].items;
        assert_eq!(
            items[&iid(3)].position,
            items[&iid(5)].position,
            "same spot, same position"
        );
        assert_eq!(order(&a, pid(1)), [1, 3, 5, 9].map(iid));

        // Inserting right after the first tied item must land between the two tied items,
        // which needs the second one to get a fresh position.
        insert(&mut a, 4, Placement::After(iid(3)));
        assert_eq!(order(&a, pid(1)), [1, 3, 4, 5, 9].map(iid));
        // And right after the anchor of the tie, before both.
        insert(&mut a, 2, Placement::After(iid(1)));
        assert_eq!(order(&a, pid(1)), [1, 2, 3, 4, 5, 9].map(iid));
    }

    #[test]
    fn place_respaces_items_tied_with_the_anchor_in_their_order() {
        let p = pid(1);
        let tie = FractionalIndex::default().to_string();
        let after = FractionalIndex::new_after(&FractionalIndex::default()).to_string();
        let slots = vec![
            Slot {
                id: iid(1),
                position: tie.clone(),
            },
            Slot {
                id: iid(2),
                position: tie.clone(),
            },
            Slot {
                id: iid(3),
                position: tie.clone(),
            },
            Slot {
                id: iid(4),
                position: after.clone(),
            },
        ];
        let placed = place(p, &slots, Placement::After(iid(1))).unwrap();
        let respaced: Vec<ItemId> = placed.respaced.iter().map(|(id, _)| *id).collect();
        assert_eq!(respaced, vec![iid(2), iid(3)]);
        let seq: Vec<&str> = [
            tie.as_str(),
            placed.position.as_str(),
            placed.respaced[0].1.as_str(),
            placed.respaced[1].1.as_str(),
            after.as_str(),
        ]
        .to_vec();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
        // The last of a tie needs nothing respaced.
        let placed = place(p, &slots, Placement::After(iid(3))).unwrap();
        assert!(placed.respaced.is_empty());
        assert!(tie < placed.position && placed.position < after);
    }

    #[test]
    fn corrupt_positions_are_errors_not_panics_and_can_be_repaired_by_moving() {
        let mut doc = venue_with_playlist();
        insert(&mut doc, 1, Placement::End);
        insert(&mut doc, 2, Placement::End);
        let items = items_obj(&doc, pid(1)).unwrap();
        let one = map_at(&doc, &items, &iid(1).to_string()).unwrap().unwrap();
        for bad in ["é", "8", "zz", "", "00"] {
            doc.put(&one, "position", bad).unwrap();
            let err = insert_item(
                &mut doc,
                pid(1),
                iid(3),
                Placement::After(iid(1)),
                hash(1),
                5,
                None,
            )
            .unwrap_err();
            assert!(
                matches!(err, DocOpError::CorruptPosition { item, .. } if item == iid(1)),
                "{bad:?}: {err}"
            );
        }
        move_item(&mut doc, pid(1), iid(1), Placement::End).unwrap();
        insert(&mut doc, 3, Placement::After(iid(1)));
        assert_eq!(order(&doc, pid(1)), [2, 1, 3].map(iid));
    }
}
