//! The kiosk API's read path: the venue document as a typed [`VenueDoc`], and each kiosk's
//! manifest, rebuilt only when they can have changed.
//!
//! Kiosks poll their manifest all day and it almost never changes, so an unchanged poll
//! must cost next to nothing. [`VenueView`] keeps the last hydrated document with the
//! automerge heads it was read at; a request compares heads (a short lock of the document)
//! and hydrates again only when they moved. Each kiosk's manifest is kept for that
//! document and reused until the earliest of its `next.at` (the schedule changes what
//! plays) and [`MANIFEST_TTL`] (a change further than the manifest's look-ahead comes into
//! view as time passes). `manifest()` is a pure function of the document, the kiosk and
//! the time, so a cached answer is exactly what a fresh computation would give.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use automerge::ChangeHash;
use chrono::{DateTime, Utc};
use taplink_sync_io::docs::{Documents, DocumentsError};
use taplink_sync_proto::doc::{VenueDoc, load_venue};
use taplink_sync_proto::ids::KioskId;
use taplink_sync_proto::manifest::{Manifest, ManifestError, manifest};
use taplink_sync_proto::wire::DocId;

/// The longest a kiosk's manifest is reused without being computed again.
pub const MANIFEST_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Why the view could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The venue document has not arrived from central yet (first start offline), or
    /// holds no venue yet.
    #[error("the venue document has not been received from central yet")]
    NotSynced,
    /// The documents could not be read.
    #[error(transparent)]
    Documents(#[from] DocumentsError),
    /// No manifest for this kiosk.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// One hydrated state of the venue document.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Counts hydrations; manifests are cached per generation.
    pub generation: u64,
    /// The automerge heads the document was read at.
    heads: Vec<ChangeHash>,
    /// The document.
    pub doc: Arc<VenueDoc>,
}

#[derive(Debug)]
struct CachedManifest {
    generation: u64,
    computed_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    manifest: Arc<Manifest>,
}

/// The venue document and the kiosks' manifests, cached (see the module docs).
#[derive(Debug)]
pub struct VenueView {
    venue: DocId,
    current: Mutex<Option<Snapshot>>,
    manifests: Mutex<HashMap<KioskId, CachedManifest>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are replaced whole, never left half-written.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VenueView {
    /// A view of `venue`.
    pub fn new(venue: DocId) -> Self {
        Self {
            venue,
            current: Mutex::new(None),
            manifests: Mutex::new(HashMap::new()),
        }
    }

    /// The venue document as it is now.
    pub fn snapshot(&self, docs: &Documents) -> Result<Snapshot, ViewError> {
        docs.read(self.venue, |am| {
            let heads = am.get_heads();
            let mut current = locked(&self.current);
            if let Some(snap) = current.as_ref().filter(|s| s.heads == heads) {
                return Ok(snap.clone());
            }
            let doc = load_venue(am).map_err(|_| ViewError::NotSynced)?;
            let snap = Snapshot {
                generation: current.as_ref().map_or(0, |s| s.generation + 1),
                heads,
                doc: Arc::new(doc),
            };
            *current = Some(snap.clone());
            Ok(snap)
        })
        .map_err(|e| match e {
            DocumentsError::Unknown(_) => ViewError::NotSynced,
            other => ViewError::Documents(other),
        })?
    }

    /// The document as it is now.
    pub fn doc(&self, docs: &Documents) -> Result<Arc<VenueDoc>, ViewError> {
        Ok(self.snapshot(docs)?.doc)
    }

    /// `kiosk`'s manifest in `snap` at `now`.
    pub fn manifest(
        &self,
        snap: &Snapshot,
        kiosk: KioskId,
        now: DateTime<Utc>,
    ) -> Result<Arc<Manifest>, ViewError> {
        if let Some(hit) = locked(&self.manifests).get(&kiosk).filter(|c| {
            c.generation == snap.generation && c.computed_at <= now && now < c.valid_until
        }) {
            return Ok(hit.manifest.clone());
        }
        let fresh = Arc::new(manifest(&snap.doc, kiosk, now)?);
        let ttl_end = now + MANIFEST_TTL;
        let valid_until = fresh.next.as_ref().map_or(ttl_end, |n| n.at.min(ttl_end));
        let mut manifests = locked(&self.manifests);
        // Entries of older generations are stale: keep only kiosks of this document.
        if manifests.values().any(|c| c.generation != snap.generation) {
            manifests.retain(|_, c| c.generation == snap.generation);
        }
        manifests.insert(
            kiosk,
            CachedManifest {
                generation: snap.generation,
                computed_at: now,
                valid_until,
                manifest: fresh.clone(),
            },
        );
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taplink_sync_io::docstore::DocDb;
    use taplink_sync_proto::doc::{self, MediaMeta, Placement};
    use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId, VenueId};
    use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};

    /// 2026-11-02 (a Monday) 09:00 UTC, an hour before a 10:00 (London) window opens.
    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_793_610_000, 0).unwrap()
    }

    struct Fixture {
        docs: Documents,
        view: VenueView,
        venue: DocId,
        kiosk: KioskId,
        playlist: PlaylistId,
        item: ItemId,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DocDb::open(&dir.path().join("docs.sqlite")).unwrap());
        let docs = Documents::open(db, automerge::ActorId::random()).unwrap();
        let venue = DocId::Venue(VenueId::random());
        let (kiosk, playlist, item) = (KioskId::random(), PlaylistId::random(), ItemId::random());
        let mut am = doc::new_venue_doc("Bar", "Europe/London").unwrap();
        let media = MediaHash::of(b"a slide");
        let meta = MediaMeta {
            name: "a.png".into(),
            content_type: "image/png".into(),
            size: 7,
        };
        doc::add_media(&mut am, media, &meta).unwrap();
        doc::create_playlist(&mut am, playlist, "Loop").unwrap();
        doc::insert_item(&mut am, playlist, item, Placement::End, media, 5_000, None).unwrap();
        let window = ScheduleWindow::new(Weekdays::ALL, 10 * 60, 11 * 60).unwrap();
        doc::insert_item(
            &mut am,
            playlist,
            ItemId::random(),
            Placement::End,
            media,
            5_000,
            Some(window),
        )
        .unwrap();
        doc::set_default_playlist(&mut am, Some(playlist)).unwrap();
        doc::add_kiosk(&mut am, kiosk, "Screen").unwrap();
        docs.create(venue, am).unwrap();
        Fixture {
            docs,
            view: VenueView::new(venue),
            venue,
            kiosk,
            playlist,
            item,
            _dir: dir,
        }
    }

    #[test]
    fn the_document_is_hydrated_again_only_when_it_changed() {
        let f = fixture();
        let a = f.view.snapshot(&f.docs).unwrap();
        let b = f.view.snapshot(&f.docs).unwrap();
        assert_eq!(a.generation, b.generation);
        assert!(
            Arc::ptr_eq(&a.doc, &b.doc),
            "unchanged: the same hydrated copy"
        );
        let m1 = f.view.manifest(&a, f.kiosk, t0()).unwrap();
        assert!(Arc::ptr_eq(
            &m1,
            &f.view.manifest(&b, f.kiosk, t0()).unwrap()
        ));

        f.docs
            .edit(f.venue, |am| {
                doc::set_item_duration(am, f.playlist, f.item, 9_000)
            })
            .unwrap();
        let c = f.view.snapshot(&f.docs).unwrap();
        assert_ne!(c.generation, a.generation);
        let m2 = f.view.manifest(&c, f.kiosk, t0()).unwrap();
        assert_ne!(m1.version, m2.version);
        assert_eq!(m2.now[0].duration_ms, 9_000);
        assert_eq!(*m2, manifest(&c.doc, f.kiosk, t0()).unwrap());
    }

    #[test]
    fn a_cached_manifest_is_what_a_fresh_one_would_be_at_any_time() {
        let f = fixture();
        let snap = f.view.snapshot(&f.docs).unwrap();
        // Across the window's opening and closing, a TTL, and the clock going back.
        let offsets = [0, 1, 59, 61, 3_599, 3_600, 3_601, 30, 7_200, 7_199, -5, 0];
        for s in offsets {
            let now = t0() + chrono::TimeDelta::seconds(s);
            let cached = f.view.manifest(&snap, f.kiosk, now).unwrap();
            assert_eq!(
                *cached,
                manifest(&snap.doc, f.kiosk, now).unwrap(),
                "at +{s} s"
            );
        }
        assert!(matches!(
            f.view.manifest(&snap, KioskId::random(), t0()),
            Err(ViewError::Manifest(ManifestError::UnknownKiosk(_)))
        ));
    }

    #[test]
    fn a_venue_document_that_has_not_arrived_reads_as_not_synced() {
        let f = fixture();
        let other = VenueView::new(DocId::Venue(VenueId::random()));
        assert!(matches!(other.snapshot(&f.docs), Err(ViewError::NotSynced)));
    }
}
