//! Realistic venue documents for the sync benchmarks: a venue with kiosks, media and
//! playlists, and a long history of the edits admins and store staff make (renames,
//! playlist items added, moved, retimed and removed, assignments), all through the
//! validated operations of `taplink_sync_proto::doc`, one committed change per edit.
//!
//! Everything after the venue's creation is seeded, actor ids included, so two runs produce
//! the same content and (up to the creating change's random actor, a few bytes) the same
//! byte counts.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use automerge::{ActorId, AutoCommit};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use taplink_sync_proto::doc::{self, MediaMeta, Orientation, Placement, load_venue};
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};

/// Kiosks in the benchmark venue (a large bar or a small mall).
const KIOSKS: usize = 40;
/// Playlists in the benchmark venue.
const PLAYLISTS: usize = 12;
/// Media files in the venue's library.
const MEDIA: usize = 60;
/// Items per playlist the edits keep around (inserts and removals balance near this).
const ITEMS_TARGET: usize = 15;
/// Edits in a row that may change nothing before the editor gives up (a bug, not chance).
const MAX_NO_OPS: usize = 100;
/// Kiosk groups used by assignments.
const GROUPS: [&str; 4] = ["bar", "entrance", "terrace", "back-office"];

/// The bytes of the media files a venue built with `seed` references (small, so that a
/// benchmark can store them where they should be and nobody fetches anything).
pub fn media_blobs(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006d_6564_6961);
    (0..MEDIA)
        .map(|_| {
            let mut blob = vec![0u8; rng.random_range(512..4096)];
            rng.fill_bytes(&mut blob);
            blob
        })
        .collect()
}

/// An actor id made from a seed, so documents are reproducible.
pub fn actor(seed: u64) -> ActorId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..].copy_from_slice(b"tplbench");
    ActorId::from(bytes.as_slice())
}

/// What an editor knows of the venue (the ids it can edit), and its random source.
#[derive(Debug, Clone)]
pub struct Editor {
    kiosks: Vec<KioskId>,
    playlists: Vec<PlaylistId>,
    items: BTreeMap<PlaylistId, Vec<ItemId>>,
    media: Vec<MediaHash>,
    rng: StdRng,
    /// Edits made so far (for names that change every time).
    edits: u64,
}

impl Editor {
    /// A venue document with kiosks, media and playlists, then edits until it holds
    /// `changes` changes; and the editor that knows its ids.
    pub fn build(changes: usize, seed: u64) -> Result<(AutoCommit, Editor)> {
        let mut am = doc::new_venue_doc("The Anchor", "Europe/London")?.with_actor(actor(seed));
        let editor = Editor::populate(&mut am, changes, seed)?;
        Ok((am, editor))
    }

    /// Add kiosks, media and playlists to the venue document `am`, then edit it until it
    /// holds `changes` changes (each committed); returns the editor that knows its ids.
    pub fn populate(am: &mut AutoCommit, changes: usize, seed: u64) -> Result<Editor> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut editor = Editor {
            kiosks: Vec::new(),
            playlists: Vec::new(),
            items: BTreeMap::new(),
            media: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            edits: 0,
        };
        for (i, blob) in media_blobs(seed).iter().enumerate() {
            let hash = MediaHash::of(blob);
            let meta = MediaMeta {
                name: format!("promo-{i:03}.png"),
                content_type: "image/png".into(),
                size: blob.len() as u64,
            };
            doc::add_media(am, hash, &meta)?;
            am.commit();
            editor.media.push(hash);
        }
        for i in 0..PLAYLISTS {
            let id = PlaylistId::from_bytes(rng.random());
            doc::create_playlist(am, id, &format!("Playlist {i}"))?;
            am.commit();
            editor.playlists.push(id);
            editor.items.insert(id, Vec::new());
            for _ in 0..ITEMS_TARGET {
                editor.insert_item(am, id)?;
                am.commit();
            }
        }
        for i in 0..KIOSKS {
            let id = KioskId::from_bytes(rng.random());
            doc::add_kiosk(am, id, &format!("Screen {i}"))?;
            am.commit();
            editor.kiosks.push(id);
        }
        let made = am.get_changes(&[]).len();
        for _ in made..changes {
            editor.change(am)?;
        }
        Ok(editor)
    }

    /// The same editor with another random stream (for a second replica's offline edits).
    pub fn reseeded(&self, seed: u64) -> Editor {
        Editor {
            rng: StdRng::seed_from_u64(seed),
            ..self.clone()
        }
    }

    /// Learn the items `am` holds now: after a merge, the other side may have removed some
    /// this editor would otherwise try to edit.
    pub fn refresh(&mut self, am: &AutoCommit) -> Result<()> {
        let venue = load_venue(am)?;
        self.items = venue
            .playlists
            .iter()
            .map(|(id, p)| (*id, p.items.keys().copied().collect()))
            .collect();
        Ok(())
    }

    /// Make realistic edits to `am` until one of them changed something, and commit it as
    /// one change. (An edit can be a no-op: a kiosk set to the orientation it has.)
    pub fn change(&mut self, am: &mut AutoCommit) -> Result<()> {
        for _ in 0..MAX_NO_OPS {
            self.edit(am)?;
            if am.commit().is_some() {
                return Ok(());
            }
        }
        bail!("{MAX_NO_OPS} edits in a row changed nothing")
    }

    /// Make one realistic edit to `am`, uncommitted (it may change nothing).
    fn edit(&mut self, am: &mut AutoCommit) -> Result<()> {
        self.edits += 1;
        let n = self.edits;
        let roll = self.rng.random_range(0..100u32);
        let kiosk = self.kiosks[self.rng.random_range(0..self.kiosks.len())];
        let playlist = self.playlists[self.rng.random_range(0..self.playlists.len())];
        match roll {
            0..25 => doc::rename_kiosk(am, kiosk, &format!("Screen {} (edit {n})", n % 97))?,
            25..45 => {
                if let Some(item) = self.pick_item(playlist) {
                    let ms = self.rng.random_range(3..60u64) * 1000;
                    doc::set_item_duration(am, playlist, item, ms)?;
                } else {
                    self.insert_item(am, playlist)?;
                }
            }
            45..57 => {
                let (item, after) = (self.pick_item(playlist), self.pick_item(playlist));
                match (item, after) {
                    (Some(item), Some(after)) if item != after => {
                        doc::move_item(am, playlist, item, Placement::After(after))?;
                    }
                    (Some(item), _) => doc::move_item(am, playlist, item, Placement::Front)?,
                    (None, _) => self.insert_item(am, playlist)?,
                }
            }
            57..72 => {
                let len = self.items.get(&playlist).map_or(0, Vec::len);
                if len >= ITEMS_TARGET {
                    self.remove_item(am, playlist)?;
                } else {
                    self.insert_item(am, playlist)?;
                }
            }
            72..80 => {
                if let Some(item) = self.pick_item(playlist) {
                    // Three hours starting on the hour, ending the same day.
                    let start = self.rng.random_range(0..20u16) * 60;
                    let window = ScheduleWindow::new(Weekdays::WEEKDAYS, start, start + 180)?;
                    doc::set_item_window(am, playlist, item, Some(window))?;
                } else {
                    self.insert_item(am, playlist)?;
                }
            }
            80..87 => doc::assign_playlist(am, kiosk, Some(playlist))?,
            87..92 => {
                let group = GROUPS[self.rng.random_range(0..GROUPS.len())];
                doc::set_kiosk_group(am, kiosk, Some(group))?;
            }
            92..95 => {
                let group = GROUPS[self.rng.random_range(0..GROUPS.len())];
                doc::assign_group_playlist(am, group, Some(playlist))?;
            }
            95..98 => doc::rename_playlist(am, playlist, &format!("Playlist {} v{n}", n % 13))?,
            _ => {
                let orientation = if self.rng.random_bool(0.5) {
                    Orientation::Portrait
                } else {
                    Orientation::Landscape
                };
                doc::set_orientation(am, kiosk, orientation)?;
            }
        }
        Ok(())
    }

    fn pick_item(&mut self, playlist: PlaylistId) -> Option<ItemId> {
        let items = self.items.get(&playlist)?;
        if items.is_empty() {
            return None;
        }
        Some(items[self.rng.random_range(0..items.len())])
    }

    fn insert_item(&mut self, am: &mut AutoCommit, playlist: PlaylistId) -> Result<()> {
        let item = ItemId::from_bytes(self.rng.random());
        let media = self.media[self.rng.random_range(0..self.media.len())];
        let at = match self.pick_item(playlist) {
            Some(after) if self.rng.random_bool(0.5) => Placement::After(after),
            _ => Placement::End,
        };
        let ms = self.rng.random_range(5..30u64) * 1000;
        doc::insert_item(am, playlist, item, at, media, ms, None)?;
        self.items.entry(playlist).or_default().push(item);
        Ok(())
    }

    fn remove_item(&mut self, am: &mut AutoCommit, playlist: PlaylistId) -> Result<()> {
        let items = self
            .items
            .get_mut(&playlist)
            .context("the editor knows every playlist it made")?;
        if items.is_empty() {
            return Ok(());
        }
        let item = items.swap_remove(self.rng.random_range(0..items.len()));
        doc::remove_item(am, playlist, item)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_venue_with_the_requested_history_reproducibly() {
        let (mut a, mut editor) = Editor::build(600, 7).unwrap();
        assert_eq!(a.get_changes(&[]).len(), 600);
        let venue = load_venue(&a).unwrap();
        assert_eq!(venue.kiosks.len(), KIOSKS);
        assert_eq!(venue.playlists.len(), PLAYLISTS);
        let (b, _) = Editor::build(600, 7).unwrap();
        assert_eq!(venue, load_venue(&b).unwrap(), "same seed, same content");
        for _ in 0..50 {
            editor.change(&mut a).unwrap();
        }
        assert_eq!(a.get_changes(&[]).len(), 650);
        load_venue(&a).unwrap();
    }
}
